"""Diagnostics to a stderr nobody reads: traffic and SIGTERM go on, the lost lines are counted.

A harness that reads the ready line and then stops reading leaves stderr a full pipe. The
proxy runs as the container runs it (the CLI in a subprocess) at ``--log-level debug``, its
stderr a pipe shrunk to one page and read only up to the ready line.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from ..cli_support import READY, _env
from ..support import Client, exchange_raw
from .test_admin import scrape, total
from .test_workers import _free_port

F_SETPIPE_SZ = 1031  # Linux: fcntl.F_SETPIPE_SZ from Python 3.10 on some builds only
F_GETPIPE_SZ = 1032
FIONREAD = 0x541B


@dataclass
class Stalled:
    process: trio.Process
    port: int
    stderr_fd: int  # the read end, not read from after the ready line

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def unread_bytes(self) -> int:
        return int.from_bytes(fcntl.ioctl(self.stderr_fd, FIONREAD, b"\0" * 4), "little")


@asynccontextmanager
async def stalled_stderr_proxy(upstream: tuple[str, int], *args: str) -> AsyncIterator[Stalled]:
    """The CLI with stderr on a one-page pipe that is read up to the ready line, then never."""
    read_fd, write_fd = os.pipe()
    fcntl.fcntl(write_fd, F_SETPIPE_SZ, 4096)
    command = [sys.executable, "-m", "trioproxy", "--listen", "127.0.0.1:0", "--upstream"]
    command += [f"{upstream[0]}:{upstream[1]}", "--log-level", "debug", *args]
    try:
        process = await trio.lowlevel.open_process(
            command, stdout=subprocess.DEVNULL, stderr=write_fd, env=_env()
        )
        os.close(write_fd)
        write_fd = -1
        seen = bytearray()
        try:
            with trio.fail_after(20):
                async with trio.lowlevel.FdStream(os.dup(read_fd)) as stream:
                    while (match := READY.search(seen)) is None:
                        chunk = await stream.receive_some(256)  # a little past it, at most
                        assert chunk, f"proxy exited: {seen.decode()}"
                        seen += chunk
            yield Stalled(process, int(match.group(2)), read_fd)
        finally:
            if process.poll() is None:
                process.kill()
            with trio.move_on_after(5):
                await process.wait()
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_a_stderr_nobody_reads_stops_neither_traffic_nor_sigterm(
    origin: tuple[str, int], tmp_path: Path, workers: str
) -> None:
    admin_port = await _free_port()
    admin = ("127.0.0.1", admin_port)
    (tmp_path / "trioproxy.toml").write_text(
        f'[admin]\nlisten = "127.0.0.1:{admin_port}"\n[timeouts]\ndrain_s = 2\n'
    )
    args = ("--workers", workers, "--config-dir", str(tmp_path))
    async with stalled_stderr_proxy(origin, *args) as proxy:
        with trio.fail_after(30):  # with blocking writes, the first few dozen requests hang
            for _ in range(400):
                async with Client.connect(proxy.address) as client:
                    assert (await client.request(b"GET", b"/")).status == 200
                bad = await exchange_raw(proxy.address, b"GARBAGE\r\n\r\n")  # an INFO line each
                assert bad.startswith(b"HTTP/1.1 400 ")
            samples = await scrape(admin)
        # Nobody reads the page: it holds what was written, and is too full for the next batch
        # (pipe writes are atomic, and a batch may take up to a page, so how full it stopped
        # says nothing more); lines were dropped, so the writer is stuck, not idle.
        assert proxy.unread_bytes() > 0
        assert total(samples, "trioproxy_diagnostics_dropped_total") > 0
        proxy.process.send_signal(signal.SIGTERM)
        with trio.fail_after(2 + 3):  # drain_s, and the writer threads' second at exit
            status = await proxy.process.wait()
        assert status == 0
