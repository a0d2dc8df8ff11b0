"""Diagnostics through a queue: emitting never waits on stderr; lost lines are counted and
reported once stderr takes lines again. No sleeps: every wait is on a pipe or a capped join."""

from __future__ import annotations

import fcntl
import logging
import os
import select
import time

from trioproxy.app._logwriter import StderrHandler, StderrWriter

F_SETPIPE_SZ = 1031


def _render(level: int, message: str) -> str:
    return f"{logging.getLevelName(level)} {message}"


def test_a_full_stderr_drops_and_counts_lines_then_says_how_many() -> None:
    read_fd, write_fd = os.pipe()
    fcntl.fcntl(write_fd, F_SETPIPE_SZ, 4096)
    writer = StderrWriter(_render, fd=write_fd)
    writer.start()
    handler = StderrHandler(writer)
    handler.setFormatter(logging.Formatter("%(message)s"))
    try:
        started = time.monotonic()
        for index in range(3000):  # far more than the pipe and the queue hold
            handler.handle(logging.makeLogRecord({"msg": f"line {index:04d} " + "x" * 60}))
        assert time.monotonic() - started < 5  # never waited for the pipe (a blocking
        # write would wait forever: nobody reads yet)
        dropped = handler.dropped
        assert dropped > 0
        seen = b""
        deadline = time.monotonic() + 10
        while seen.count(b"\n") < 3000 - dropped + 1:  # read: stderr drains
            left = deadline - time.monotonic()
            assert left > 0 and select.select([read_fd], [], [], left)[0], seen[-300:]
            seen += os.read(read_fd, 65536)
        lines = seen.decode().splitlines()
        summary = [line for line in lines if "diagnostics lines dropped" in line]
        assert summary == [
            f"WARNING {dropped} diagnostics lines dropped ({dropped} in all): stderr was full"
        ]
        written = [line for line in lines if line.startswith("line ")]
        assert len(written) + dropped == 3000  # each line written whole, or counted
    finally:
        writer.close(timeout_s=5)
        os.close(read_fd)
        os.close(write_fd)
