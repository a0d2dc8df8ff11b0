"""What a started command holds in ``sys.modules`` when it says it is ready: the supervisor of
``--workers N`` only spawns and watches workers, so nothing of the engine, trio, h11, the
configuration loader or the admin server's HTTP code; a single process keeps the modules
`app/_lean` defers as stand-ins, and without a configuration file no TOML parser."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import trio

from ..cli_support import command_process

# The command as `python -m trioproxy` runs it, writing its modules to a file at `trim`, which
# runs just before the ready line (a worker runs `-m trioproxy` itself and writes nothing).
REPORTING = (
    "import sys; import trioproxy.app._lean as lean; trim, path = lean.trim, sys.argv.pop(1)\n"
    "def report():\n"
    "    trim()\n"
    "    real = [n for n, m in sys.modules.items() if type(m) is not lean._Deferred]\n"
    "    with open(path, 'w') as f: f.write(' '.join(sorted(real)))\n"
    "lean.trim = report\n"
    "from trioproxy.app._cli import main; sys.exit(main())"
)

# Worth megabytes together, and needed by a worker, never by its supervisor.
NOT_IN_THE_SUPERVISOR = {
    "trio",
    "h11",
    "h11_mypyc",
    "tomllib",
    "dataclasses",  # brings inspect, ast and dis
    "inspect",
    "json",
    "shutil",  # brings bz2 and lzma
    "encodings.idna",  # brings stringprep and unicodedata
    "trioproxy.config._config",
    "trioproxy.core._headers",
    "trioproxy.app._superadmin",  # only with an admin listener
    "trioproxy.engine._server",
}


async def _modules_at_ready(tmp_path: Path, *args: str) -> set[str]:
    report = tmp_path / "modules"
    config = tmp_path / "config"
    config.mkdir()
    command = [sys.executable, "-c", REPORTING, str(report), "--listen", "127.0.0.1:0"]
    command += ["--upstream", "127.0.0.1:9", "--config-dir", str(config), *args]
    async with command_process(command) as process:
        assert process.stderr is not None
        seen = bytearray()
        with trio.fail_after(20):
            while not report.exists() or not report.read_text():  # written before the ready line
                chunk = await process.stderr.receive_some(65536)
                assert chunk, seen.decode()
                seen += chunk
            process.send_signal(signal.SIGTERM)
            while await process.stderr.receive_some(65536):
                pass
            assert await process.wait() == 0
    return set(report.read_text().split())


async def test_the_supervisor_holds_nothing_of_what_only_a_worker_needs(tmp_path: Path) -> None:
    imported = await _modules_at_ready(tmp_path, "--workers", "2")
    assert "trioproxy.app._supervisor" in imported
    assert NOT_IN_THE_SUPERVISOR & imported == set()
    assert {m for m in imported if m.startswith("trioproxy.hooks")} == set()


async def test_a_single_process_keeps_the_deferred_modules_deferred(tmp_path: Path) -> None:
    from trioproxy.app._lean import DEFERRED

    imported = await _modules_at_ready(tmp_path, "--workers", "1")
    assert "trioproxy.engine._server" in imported
    assert set(DEFERRED) & imported == set()
    # No configuration file: nothing parses TOML (tomllib also brings datetime).
    assert {"tomllib", "datetime", "encodings.idna"} & imported == set()
