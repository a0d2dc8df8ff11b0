"""``trioproxy demo`` in a subprocess: its ready line has a matching stop line, as the proxy's."""

from __future__ import annotations

import signal
import sys

import trio

from ..cli_support import command_process, stderr_until_ready


async def test_demo_says_stopped_after_sigterm() -> None:
    command = [sys.executable, "-m", "trioproxy", "demo", "--listen", "127.0.0.1:0"]
    async with command_process(command) as process:
        with trio.fail_after(20):
            seen = await stderr_until_ready(process)
            process.send_signal(signal.SIGTERM)
            assert process.stderr is not None
            async for chunk in process.stderr:
                seen += chunk
            assert await process.wait() == 0
    assert seen.decode().splitlines()[-1].endswith("trioproxy: stopped")
