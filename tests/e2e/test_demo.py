"""``trioproxy demo`` in a subprocess: its ready line has a matching stop line, as the proxy's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import trio

from ..cli_support import READY


async def test_demo_says_stopped_after_sigterm() -> None:
    command = [sys.executable, "-m", "trioproxy", "demo", "--listen", "127.0.0.1:0"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIOPROXY_")}
    process = await trio.lowlevel.open_process(command, stderr=subprocess.PIPE, env=env)
    assert process.stderr is not None
    seen = bytearray()
    try:
        with trio.fail_after(20):
            while not READY.search(seen):
                chunk = await process.stderr.receive_some(65536)
                assert chunk, seen.decode()
                seen += chunk
            process.send_signal(signal.SIGTERM)
            async for chunk in process.stderr:
                seen += chunk
            assert await process.wait() == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert seen.decode().splitlines()[-1].endswith("trioproxy: stopped")
