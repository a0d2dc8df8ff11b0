"""Access lines to a stdout nobody reads: traffic and SIGTERM go on, and no line is torn.

The event loop writes access lines itself while the pipe takes them at once
(`_logwriter.LoopLines`); this shows that a full pipe still never stops it. The proxy runs as
the container runs it (the CLI in a subprocess), its stdout a pipe shrunk to one page and
read only once the proxy has exited.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from ..cli_support import READY, _env
from ..support import Client
from .test_stalled_stderr import F_SETPIPE_SZ


async def _port_when_ready(stderr: trio.abc.ReceiveStream) -> int:
    seen = bytearray()
    with trio.fail_after(20):
        while (match := READY.search(seen)) is None:
            chunk = await stderr.receive_some(4096)
            assert chunk, f"proxy exited: {seen.decode()}"
            seen += chunk
    return int(match.group(2))


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_a_stdout_nobody_reads_stops_neither_traffic_nor_sigterm(
    origin: tuple[str, int], tmp_path: Path, workers: str
) -> None:
    (tmp_path / "trioproxy.toml").write_text("[timeouts]\ndrain_s = 2\n")
    read_fd, write_fd = os.pipe()
    fcntl.fcntl(write_fd, F_SETPIPE_SZ, 4096)
    command = [sys.executable, "-m", "trioproxy", "--listen", "127.0.0.1:0", "--upstream"]
    command += [f"{origin[0]}:{origin[1]}", "--workers", workers, "--config-dir", str(tmp_path)]
    try:
        process = await trio.lowlevel.open_process(
            command, stdout=write_fd, stderr=subprocess.PIPE, env=_env()
        )
        os.close(write_fd)
        try:
            assert process.stderr is not None
            address = ("127.0.0.1", await _port_when_ready(process.stderr))
            with trio.fail_after(30):  # a write that waited on the pipe would hang them all
                for _ in range(300):
                    async with Client.connect(address) as client:
                        assert (await client.request(b"GET", b"/")).status == 200
            process.send_signal(signal.SIGTERM)
            with trio.fail_after(2 + 3):  # drain_s, and the writer threads' two seconds
                assert await process.wait() == 0
        finally:
            if process.poll() is None:
                process.kill()
                await process.wait()
        with os.fdopen(read_fd, "rb") as pipe:
            read_fd = -1
            written = pipe.read()
    finally:
        if read_fd >= 0:
            os.close(read_fd)
    lines = written.decode().splitlines()
    assert 0 < len(lines) < 300  # the page filled up; the rest were dropped
    assert all(json.loads(line)["status"] == "200" for line in lines)  # whole lines only
