"""Who tunes the cyclic collector: the command's serving process does (`app/_gcsettle`), a
program that embeds trioproxy keeps its own settings."""

from __future__ import annotations

import gc
import signal
import sys

import trio

import trioproxy
from trioproxy.app._gcsettle import YOUNG_THRESHOLD

from ..cli_support import command_process, stderr_until_ready
from ..support import Client

# The command as `python -m trioproxy` runs it, saying its collector settings as it exits.
REPORTING = (
    "import atexit, gc, sys; "
    "atexit.register(lambda: print('gc', gc.get_threshold()[0], gc.get_freeze_count() > 0, "
    "file=sys.stderr)); "
    "from trioproxy.app._cli import main; sys.exit(main())"
)


async def _collector_settings_at_exit(*, reload_first: bool) -> bytes:
    """Start the command, SIGHUP it first if asked (and wait for the reload's outcome line),
    stop it: its stderr, ending with the settings it reported as it exited."""
    command = [sys.executable, "-c", REPORTING, "--listen", "127.0.0.1:0", "--workers", "1"]
    command += ["--upstream", "127.0.0.1:9"]
    async with command_process(command) as process:
        assert process.stderr is not None
        with trio.fail_after(15):
            seen = await stderr_until_ready(process)
            if reload_first:
                process.send_signal(signal.SIGHUP)
                while b": ok, " not in seen:  # the reload's outcome line
                    seen += await process.stderr.receive_some(65536)
            process.terminate()
            while chunk := await process.stderr.receive_some(65536):
                seen += chunk
            assert await process.wait() == 0
    return bytes(seen)


async def test_the_commands_process_freezes_startup_and_raises_the_young_threshold() -> None:
    seen = await _collector_settings_at_exit(reload_first=False)
    assert f"gc {YOUNG_THRESHOLD} True".encode() in seen, seen.decode()


async def test_a_reload_thaws_what_startup_froze() -> None:
    """The replaced configuration (its hook modules are cycles) must be collectable."""
    seen = await _collector_settings_at_exit(reload_first=True)
    assert f"gc {YOUNG_THRESHOLD} False".encode() in seen, seen.decode()


async def test_serving_embedded_leaves_the_programs_collector_alone(
    origin: tuple[str, int],
) -> None:
    threshold, frozen = gc.get_threshold(), gc.get_freeze_count()
    async with trioproxy.running(origin) as proxy:
        async with Client.connect(proxy.address) as client:
            assert (await client.request(b"GET", b"/")).status == 200
        assert (gc.get_threshold(), gc.get_freeze_count()) == (threshold, frozen)
