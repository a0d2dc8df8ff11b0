"""The access-log sink: lines to stdout from a thread, so a slow reader never stalls the proxy.

The platform reads access logs from the container's stdout (a pipe). When its reader falls
behind, the pipe fills and a write to it blocks; done in the event loop, that would freeze every
connection. So `AccessLogWriter.write` only appends to a bounded queue, and a daemon thread does
the blocking ``os.write`` calls. When the queue is full, new lines are dropped and counted: losing
log lines under overload is better than losing requests. Drops are reported on stderr (the
contract's place for diagnostics) at most every ``report_interval_s``, and at close.

Several worker processes may share one stdout pipe. POSIX makes a write of at most ``PIPE_BUF``
bytes to a pipe atomic, so each ``os.write`` carries whole lines and at most ``PIPE_BUF`` bytes;
lines from different processes then never interleave mid-line. (A single line longer than that is
written alone; it may interleave, but nothing better is possible.)
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import logging
import os
import queue
import select
import threading
import time
from collections.abc import Callable, Iterable, Iterator

__all__ = ["PIPE_BUF", "AccessLogWriter", "StderrHandler", "pack_lines", "stderr_handler"]

# POSIX guarantees at least 512; Linux and macOS both use 4096.
PIPE_BUF: int = getattr(select, "PIPE_BUF", 4096)

_CLOSE = None  # queued by close(): the thread drains everything before it, then stops

# How long the thread sleeps between batches: lines reach stdout at most this late.
_GATHER_S = 0.02

# How many lines the thread takes off the queue before writing them out; bounds its memory.
_LINES_PER_BATCH = 256

# Errors that mean the log's reader is gone for good: stop writing and drop the rest.
_GONE = frozenset({errno.EPIPE, errno.EBADF, errno.ECONNRESET})


def pack_lines(lines: Iterable[bytes], limit: int = PIPE_BUF) -> Iterator[tuple[bytes, int]]:
    """Group newline-terminated lines into chunks of at most ``limit`` bytes, cut between lines.

    Yields ``(chunk, line_count)``; a line longer than ``limit`` is a chunk of its own.
    """
    chunk: list[bytes] = []
    size = 0
    for line in lines:
        if chunk and size + len(line) > limit:
            yield b"".join(chunk), len(chunk)
            chunk, size = [], 0
        chunk.append(line)
        size += len(line)
    if chunk:
        yield b"".join(chunk), len(chunk)


class AccessLogWriter:
    """Queue lines from the event loop; write them to ``fd`` from a daemon thread.

    `write` never blocks and never raises. `close` lets the thread write what is queued, for at
    most ``timeout_s``; it blocks for that long, so from trio call it through
    ``trio.to_thread.run_sync`` or at shutdown.
    """

    def __init__(
        self,
        fd: int = 1,
        *,
        max_queued_lines: int = 10_000,
        report_interval_s: float = 60.0,
        diagnostic_fd: int = 2,
        diagnostic_line: Callable[[int, str], str] | None = None,
        diagnose: Callable[[str], None] | None = None,
    ) -> None:
        self._fd = fd
        self._diagnostic_fd = diagnostic_fd
        # Where complaints go instead of a blocking write to ``diagnostic_fd``: the queued
        # diagnostics (`StderrHandler`), so that close() never waits on a stalled stderr.
        self._diagnose_to = diagnose
        # Renders a message as the other stderr lines are (time, level; text or JSON).
        self._diagnostic_line = diagnostic_line or (lambda level, message: f"trioproxy: {message}")
        self._max_queued = max_queued_lines
        self._report_interval_s = report_interval_s
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="trioproxy-access-log", daemon=True)
        self._closing = False
        # Counted on separate sides so that no counter is written by two threads.
        self._dropped_full = 0  # by write(), in the caller's thread
        self._dropped_unwritten = 0  # by the writer thread: write errors, reader gone
        self._reported_dropped = 0
        self._report_lock = threading.Lock()
        self._last_report = time.monotonic()
        self._gone = False  # the reader has gone for good (EPIPE, EBADF)
        self._last_batch = 0  # lines in the thread's last batch

    @property
    def dropped(self) -> int:
        """Lines that were given to `write` but will never reach the file descriptor."""
        return self._dropped_full + self._dropped_unwritten

    def start(self) -> None:
        self._thread.start()

    def write(self, line: str) -> None:
        """Queue one line (without its newline; the writer adds it)."""
        # qsize() is approximate with concurrent readers, which is fine for a bound.
        if self._closing or self._gone or self._queue.qsize() >= self._max_queued:
            self._dropped_full += 1
            return
        self._queue.put(line)

    def close(self, timeout_s: float = 5.0) -> bool:
        """Write what is queued, waiting at most ``timeout_s``; True if everything was written.

        A thread still blocked on a stuck reader after the timeout is abandoned (it is a daemon
        thread: it does not hold the process up); the lines still queued count as dropped.
        Call it once per process: a thread does not survive fork(), so a forking server
        creates and starts its writer in each worker.
        """
        if not self._closing:
            self._closing = True
            self._queue.put(_CLOSE)
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        # Whatever is still queued (the thread is stuck, or never started) will not be written.
        # A stuck thread's batch in hand is not counted: it may yet be written.
        self._dropped_full += self._discard_queued()
        # The close marker went with the rest: give it back, so that a stuck thread that comes
        # unstuck (the reader drains, or goes away) ends instead of waiting forever.
        self._queue.put(_CLOSE)
        self._report_drops(final=True)
        return not self._thread.is_alive() and self.dropped == 0

    def _discard_queued(self) -> int:
        count = 0
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return count
            count += item is not _CLOSE

    # --- The writer thread ----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while self._write_some():
                self._report_drops()
                # Let lines gather instead of being woken for each one: a put() that wakes a
                # blocked get() hands the GIL to this thread, once per request under load.
                # A full batch means lines are piling up: no pause then.
                if not self._closing and self._last_batch < _LINES_PER_BATCH:
                    time.sleep(_GATHER_S)
        except Exception as exc:  # a log thread must not die with a traceback on stderr
            self._diagnose(f"access log writer failed: {type(exc).__name__}: {exc}")

    def _write_some(self) -> bool:
        """Write one batch of queued lines; False once the close marker is reached."""
        try:
            first = self._queue.get(timeout=self._report_interval_s)
        except queue.Empty:
            return True
        lines, more = self._take_batch(first)
        self._last_batch = len(lines)
        if lines:
            encoded = (line.encode("utf-8", "backslashreplace") + b"\n" for line in lines)
            for chunk, count in pack_lines(encoded):
                self._write_chunk(chunk, count)
        return more

    def _take_batch(self, first: str | None) -> tuple[list[str], bool]:
        lines: list[str] = []
        item = first
        while item is not None:  # None is _CLOSE
            lines.append(item)
            if len(lines) >= _LINES_PER_BATCH:
                return lines, True
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return lines, True
        return lines, False

    def _write_chunk(self, chunk: bytes, count: int) -> None:
        if self._gone:
            self._dropped_unwritten += count
            return
        try:
            self._write_all(chunk)
        except OSError as exc:
            self._dropped_unwritten += count
            if exc.errno in _GONE:
                self._gone = True
                self._diagnose(f"access log output is gone ({exc.strerror}); dropping lines")
            else:
                self._diagnose(f"access log write failed ({exc.strerror}); dropped {count} lines")

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._fd, view)
            except BlockingIOError:
                # Someone made the descriptor non-blocking (it is shared with the parent's
                # shell or container runtime); wait for room here, in the thread.
                select.select([], [self._fd], [])
                continue
            view = view[written:]

    # --- Diagnostics ----------------------------------------------------------------------------

    def _report_drops(self, *, final: bool = False) -> None:
        # Called by the thread and by close(), which may run while a stuck thread wakes up.
        with self._report_lock:
            now = time.monotonic()
            if not final and now - self._last_report < self._report_interval_s:
                return
            dropped = self.dropped
            if dropped > self._reported_dropped:
                new = dropped - self._reported_dropped
                self._diagnose(
                    f"access log: dropped {new} lines ({dropped} in all): stdout is slow or gone"
                )
                self._reported_dropped = dropped
            self._last_report = now

    def _diagnose(self, message: str) -> None:
        if self._diagnose_to is not None:
            self._diagnose_to(message)
            return
        with contextlib.suppress(OSError):  # nowhere left to complain to
            line = self._diagnostic_line(logging.WARNING, message)
            os.write(self._diagnostic_fd, f"{line}\n".encode())


# --- Diagnostics ---------------------------------------------------------------------------------

# Diagnostics queued for stderr at most: at --log-level debug a busy proxy writes a few lines
# per request; this many (~200 bytes each) covers a burst, and bounds the memory at ~200 KiB.
_MAX_QUEUED_DIAGNOSTICS = 1024


class StderrWriter(AccessLogWriter):
    """The access-log writer's queue and thread, for diagnostics on stderr: a stderr nobody
    reads (a pipe to a harness that stopped reading) fills, and a blocking write there from
    the event loop would stop every request and SIGTERM with it. Full queue: lines are
    dropped and counted, and one line says how many once stderr takes lines again."""

    def __init__(self, render: Callable[[int, str], str], fd: int = 2) -> None:
        super().__init__(
            fd,
            max_queued_lines=_MAX_QUEUED_DIAGNOSTICS,
            report_interval_s=1.0,
            diagnostic_fd=fd,
            diagnostic_line=render,
        )
        self._thread.name = "trioproxy-diagnostics"

    def _report_drops(self, *, final: bool = False) -> None:
        # Only the thread reports, after each batch (so once stderr takes lines again):
        # close() runs in the caller's thread, which must never wait on stderr.
        if final:
            return
        dropped = self.dropped
        if dropped > self._reported_dropped:
            new = dropped - self._reported_dropped
            self._reported_dropped = dropped
            self._diagnose(f"{new} diagnostics lines dropped ({dropped} in all): stderr was full")


class StderrHandler(logging.Handler):
    """A logging handler that formats in the caller's thread and queues the line for stderr
    (`StderrWriter`): emitting never blocks. ``dropped`` counts lines lost to a full queue."""

    def __init__(self, writer: StderrWriter) -> None:
        super().__init__()
        self.writer = writer

    @property
    def dropped(self) -> int:
        return self.writer.dropped

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.writer.write(self.format(record))
        except Exception:
            self.handleError(record)


# The process's one stderr writer, started on first use (a list: no `global` statement).
_stderr_writer: list[StderrWriter] = []


def stderr_handler(render: Callable[[int, str], str]) -> StderrHandler:
    """A handler on this process's one stderr writer (flushed for at most a second at exit,
    so that a stderr nobody reads cannot hold the exit); ``render`` formats the writer's own
    lines as the handler does."""
    if not _stderr_writer:
        writer = StderrWriter(render)
        writer.start()
        atexit.register(writer.close, timeout_s=1.0)
        _stderr_writer.append(writer)
    return StderrHandler(_stderr_writer[0])
