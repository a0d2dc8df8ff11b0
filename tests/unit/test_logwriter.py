"""The access-log sink: whole lines on a shared pipe, drops instead of stalls, no crash when gone.

No sleeps: threads are synchronised by joins and by the pipes themselves; every join and wait
has a cap, so a regression fails instead of hanging.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Iterator

import pytest

from trioproxy.app._logwriter import PIPE_BUF, AccessLogWriter, pack_lines

CAP_S = 10.0  # the most any test waits for a thread


class Pipe:
    """A pipe whose ends are closed once: a second os.close() could hit a reused number."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        self._open = {self.read_fd, self.write_fd}

    def close(self, fd: int) -> None:
        if fd in self._open:
            self._open.remove(fd)
            os.close(fd)

    def close_all(self) -> None:
        for fd in list(self._open):
            self.close(fd)


@pytest.fixture
def pipe() -> Iterator[Pipe]:
    p = Pipe()
    yield p
    p.close_all()


@pytest.fixture
def diagnostics() -> Iterator[tuple[int, int]]:
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    yield read_fd, write_fd
    os.close(read_fd)
    os.close(write_fd)


def read_available(fd: int) -> str:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode()


class Reader:
    """Reads a pipe to end of file in a thread."""

    def __init__(self, fd: int) -> None:
        self.data = bytearray()
        self.reads: list[int] = []
        self._fd = fd
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while chunk := os.read(self._fd, 65536):
            self.data += chunk
            self.reads.append(len(chunk))

    def join(self) -> bytes:
        self._thread.join(CAP_S)
        assert not self._thread.is_alive()
        return bytes(self.data)


def set_pipe_size(fd: int, size: int) -> None:
    fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, size)


# --- pack_lines ---------------------------------------------------------------------------------


def test_pack_lines_cuts_between_lines() -> None:
    lines = [(b"%d" % i) * (i % 97 + 1) + b"\n" for i in range(2000)]
    chunks = list(pack_lines(lines))
    assert b"".join(chunk for chunk, _ in chunks) == b"".join(lines)
    assert sum(count for _, count in chunks) == len(lines)
    for chunk, count in chunks:
        assert len(chunk) <= PIPE_BUF
        assert chunk.endswith(b"\n")
        assert chunk.count(b"\n") == count
    # Full chunks: adding the next line would have crossed the limit.
    position = 0
    for chunk, count in chunks[:-1]:
        position += count
        assert len(chunk) + len(lines[position]) > PIPE_BUF


def test_pack_lines_long_line_alone() -> None:
    long = b"x" * (PIPE_BUF * 2) + b"\n"
    assert list(pack_lines([b"a\n", long, b"b\n"])) == [(b"a\n", 1), (long, 1), (b"b\n", 1)]
    assert list(pack_lines([])) == []


def test_pack_lines_exact_fit() -> None:
    line = b"y" * 1023 + b"\n"
    assert list(pack_lines([line] * 5, limit=4096)) == [(line * 4, 4), (line, 1)]


# --- Lines arrive whole -------------------------------------------------------------------------


def expected_line(writer: int, number: int) -> str:
    # Lengths vary so that chunks end at many different offsets.
    return f"w{writer} n{number} " + "abcdefghij"[number % 10] * (number % 300)


def test_lines_arrive_whole_from_several_writers(pipe: Pipe, diagnostics: tuple[int, int]) -> None:
    # Two writers on one pipe stand for two worker processes sharing the container's stdout.
    read_fd, write_fd = pipe.read_fd, pipe.write_fd
    set_pipe_size(write_fd, PIPE_BUF)  # a small pipe: writers block and race often
    reader = Reader(read_fd)
    writers = [AccessLogWriter(write_fd, diagnostic_fd=diagnostics[1]) for _ in range(2)]
    for writer in writers:
        writer.start()
    count = 3000
    for number in range(count):
        for index, writer in enumerate(writers):
            writer.write(expected_line(index, number))
    for writer in writers:
        assert writer.close(CAP_S) is True
        assert writer.dropped == 0
    pipe.close(write_fd)
    lines = reader.join().decode().split("\n")
    assert lines.pop() == ""  # the data ends with a newline
    expected = {expected_line(w, n) for w in range(2) for n in range(count)}
    assert len(lines) == len(expected)
    assert set(lines) == expected
    # Each writer's lines keep their order.
    for index in range(2):
        own = [line for line in lines if line.startswith(f"w{index} ")]
        assert own == [expected_line(index, n) for n in range(count)]
    assert read_available(diagnostics[0]) == ""


def test_long_line_is_written_whole(pipe: Pipe) -> None:
    read_fd, write_fd = pipe.read_fd, pipe.write_fd
    reader = Reader(read_fd)
    writer = AccessLogWriter(write_fd)
    writer.start()
    long = "L" * (PIPE_BUF * 3)
    writer.write("short")
    writer.write(long)
    writer.write("after")
    assert writer.close(CAP_S)
    pipe.close(write_fd)
    assert reader.join() == f"short\n{long}\nafter\n".encode()


def test_non_ascii_never_fails(pipe: Pipe) -> None:
    read_fd, write_fd = pipe.read_fd, pipe.write_fd
    reader = Reader(read_fd)
    writer = AccessLogWriter(write_fd)
    writer.start()
    writer.write("caf\xe9 \ud800")  # a lone surrogate cannot be UTF-8: it is escaped instead
    assert writer.close(CAP_S)
    pipe.close(write_fd)
    assert reader.join() == "caf\xe9 \\ud800\n".encode()


def test_non_blocking_descriptor(pipe: Pipe) -> None:
    # A shared stdout may have been made non-blocking by another process; the thread waits.
    read_fd, write_fd = pipe.read_fd, pipe.write_fd
    set_pipe_size(write_fd, PIPE_BUF)
    os.set_blocking(write_fd, False)
    writer = AccessLogWriter(write_fd, max_queued_lines=100_000)
    for number in range(2000):
        writer.write(expected_line(0, number))
    writer.start()
    reader = Reader(read_fd)
    assert writer.close(CAP_S)
    pipe.close(write_fd)
    received = reader.join().decode().split("\n")[:-1]
    assert received == [expected_line(0, n) for n in range(2000)]


# --- A reader that does not read ----------------------------------------------------------------


def test_full_pipe_drops_lines_instead_of_blocking(
    pipe: Pipe, diagnostics: tuple[int, int]
) -> None:
    read_fd, write_fd = pipe.read_fd, pipe.write_fd
    set_pipe_size(write_fd, PIPE_BUF)
    writer = AccessLogWriter(write_fd, max_queued_lines=100, diagnostic_fd=diagnostics[1])
    writer.start()
    line = "x" * 99
    count = 20_000
    started = time.monotonic()
    for _ in range(count):
        writer.write(line)
    elapsed = time.monotonic() - started
    # The pipe holds 40 lines, the queue 100, the thread's batch at most 256: the rest drop.
    assert writer.dropped >= count - 400
    assert elapsed < 1.0  # microseconds per write in fact; never a blocked write

    started = time.monotonic()
    assert writer.close(timeout_s=0.1) is False  # the thread is stuck in os.write
    assert time.monotonic() - started < 2.0
    assert writer.dropped >= count - 400
    report = read_available(diagnostics[0])
    assert f"access log: dropped {writer.dropped} lines" in report

    # Once the reader goes away, the stuck thread gets EPIPE and ends.
    pipe.close(read_fd)
    writer._thread.join(CAP_S)
    assert not writer._thread.is_alive()


# --- A reader that is gone ----------------------------------------------------------------------


def test_closed_pipe_does_not_raise(pipe: Pipe, diagnostics: tuple[int, int]) -> None:
    read_fd, write_fd = pipe.read_fd, pipe.write_fd
    pipe.close(read_fd)
    writer = AccessLogWriter(write_fd, diagnostic_fd=diagnostics[1])
    writer.start()
    for number in range(1000):
        writer.write(f"line {number}")
    assert writer.close(CAP_S) is False
    assert writer.dropped == 1000
    report = read_available(diagnostics[0]).splitlines()
    gone = [line for line in report if "output is gone" in line]
    assert len(gone) == 1, report  # reported once, not per batch
    assert "Broken pipe" in gone[0]
    assert (
        report[-1]
        == "trioproxy: access log: dropped 1000 lines (1000 in all): stdout is slow or gone"
    )


def test_bad_descriptor_does_not_raise(diagnostics: tuple[int, int]) -> None:
    writer = AccessLogWriter(1_000_000, diagnostic_fd=diagnostics[1])  # never an open fd
    writer.start()
    writer.write("a")
    writer.write("b")
    assert writer.close(CAP_S) is False
    assert writer.dropped == 2
    assert "Bad file descriptor" in read_available(diagnostics[0])


def test_no_diagnostic_descriptor_either() -> None:
    writer = AccessLogWriter(1_000_000, diagnostic_fd=1_000_001)
    writer.start()
    writer.write("a")
    assert writer.close(CAP_S) is False
    assert writer.dropped == 1


# --- Lifecycle ----------------------------------------------------------------------------------


def test_write_after_close_is_counted(pipe: Pipe) -> None:
    writer = AccessLogWriter(pipe.write_fd)
    writer.start()
    assert writer.close(CAP_S) is True
    writer.write("late")
    assert writer.dropped == 1
    assert writer.close(CAP_S) is False  # closing twice is harmless


def test_close_without_start(pipe: Pipe, diagnostics: tuple[int, int]) -> None:
    writer = AccessLogWriter(pipe.write_fd, diagnostic_fd=diagnostics[1])
    writer.write("never")
    writer.write("written")
    assert writer.close(0) is False
    assert writer.dropped == 2
    assert "dropped 2 lines" in read_available(diagnostics[0])


def test_its_messages_take_the_diagnostics_format(pipe: Pipe, diagnostics: tuple[int, int]) -> None:
    pipe.close(pipe.read_fd)

    def as_json(level: int, message: str) -> str:
        return json.dumps({"level": logging.getLevelName(level), "message": message})

    writer = AccessLogWriter(pipe.write_fd, diagnostic_fd=diagnostics[1], diagnostic_line=as_json)
    writer.start()
    writer.write("a line")
    assert writer.close(CAP_S) is False
    lines = [json.loads(line) for line in read_available(diagnostics[0]).splitlines()]
    assert lines and all(line["level"] == "WARNING" for line in lines)
    assert lines[-1]["message"].startswith("access log: dropped 1 lines")
