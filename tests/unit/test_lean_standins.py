"""The stand-ins `app/_lean` puts in ``sys.modules`` for the modules the command defers
(ssl, hmac, idna, tempfile, shutil) behave as the modules for what code that runs later does
with them: a non-ASCII upstream name resolved through trio (idna), a hook file that imports
them or uses ``from ... import``, and ``importlib.util.find_spec`` (which libraries call to
see whether an optional module is there). Run in a fresh interpreter: the stand-ins replace
modules process-wide."""

from __future__ import annotations

import subprocess
import sys
import textwrap

_SCRIPT = textwrap.dedent(
    """
    import importlib.util, sys
    from trioproxy.app._lean import DEFERRED, defer_unused_imports
    defer_unused_imports()
    import trio, trio.socket
    assert all(type(sys.modules[name]).__name__ == "_Deferred" for name in DEFERRED)
    CHECK

    async def main():
        try:  # (trio encodes a non-ASCII name with idna before it asks the resolver)
            await trio.socket.getaddrinfo("b\\u00fccher.invalid", 80)
        except OSError:
            pass
        from shutil import which
        from tempfile import gettempdir
        import hmac, ssl
        assert which("sh") and gettempdir()
        assert hmac.new(b"k", b"m", "sha256").hexdigest() and ssl.PROTOCOL_TLS_CLIENT
    trio.run(main)
    print("fine")
    """
)


def _run(check: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _SCRIPT.replace("CHECK", check)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_deferred_modules_work_when_used_later() -> None:
    done = _run("")
    assert done.stdout.strip() == "fine", done.stderr


def test_find_spec_answers_for_a_deferred_module_without_importing_it() -> None:
    check = (
        "assert all(importlib.util.find_spec(name) is not None for name in DEFERRED)\n"
        "assert all(type(sys.modules[name]).__name__ == '_Deferred' for name in DEFERRED)"
    )
    done = _run(check)
    assert done.stdout.strip() == "fine", done.stderr


_RACE = textwrap.dedent(
    """
    import importlib, sys, threading
    from trioproxy.app import _lean
    _lean.defer_unused_imports()
    stand_in = sys.modules["tempfile"]
    real_import = importlib.import_module
    errors, threads = [], []

    def racing(name, *args):
        # Another thread reaches the stand-in just as this one starts the real import.
        def other():
            try:
                stand_in.gettempdir()
            except Exception as exc:
                errors.append(repr(exc))
        if not threads:
            threads.append(threading.Thread(target=other))
            threads[0].start()
            threads[0].join(1.0)  # (a lock held here keeps it waiting: it goes on after)
        return real_import(name, *args)

    importlib.import_module = racing
    stand_in.gettempdir()
    importlib.import_module = real_import
    threads[0].join(5.0)
    print(errors)
    """
)


def test_two_threads_reaching_a_stand_in_at_once_both_get_the_module() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _RACE], check=False, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
