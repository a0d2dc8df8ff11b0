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

Handing every line to a thread costs the event loop the thread's wake-ups and the GIL passed
back and forth. So the event loop gathers its lines (`LoopLines`) and writes each batch itself
while the output takes it without waiting: through a non-blocking description of its own on
the same pipe (a write of at most ``PIPE_BUF`` bytes is then whole or refused, never partial
and never waiting), or to /dev/null. Only a batch the pipe refuses goes to the thread, and the
batches after it too until the thread has written them all, so the lines keep their order.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import logging
import os
import queue
import select
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator

__all__ = [
    "PIPE_BUF",
    "AccessLogWriter",
    "LoopLines",
    "StderrHandler",
    "pack_lines",
    "stderr_handler",
]

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
        self._queue: queue.SimpleQueue[str | bytes | None] = queue.SimpleQueue()
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
        # Lines queued (by the caller) and done with (written or dropped, by the thread):
        # equal when the thread holds none, and only then may the caller write itself.
        self._queued = 0
        self._done = 0

    @property
    def dropped(self) -> int:
        """Lines that were given to `write` but will never reach the file descriptor."""
        return self._dropped_full + self._dropped_unwritten

    def start(self) -> None:
        self._thread.start()

    def write(self, line: str | bytes) -> None:
        """Queue one line (without its newline; the writer adds it), or bytes ready to write
        as they are (whole lines with their newlines)."""
        # qsize() is approximate with concurrent readers, which is fine for a bound.
        if self._closing or self._gone or self._queue.qsize() >= self._max_queued:
            self._dropped_full += 1
            return
        self._queued += 1
        self._queue.put(line)

    @property
    def holds_lines(self) -> bool:
        """Whether the thread has lines queued or in hand (then it must write the next ones
        too, or they would overtake them)."""
        return self._queued != self._done

    def loop_fd(self) -> int | None:
        """A descriptor to the same output on which a write never waits, for `LoopLines`: a
        description of its own, non-blocking, on a pipe (the shared one keeps its flags), or
        /dev/null; None for anything else (a file, a terminal, a socket: the thread writes)."""
        try:
            st = os.fstat(self._fd)
            if stat.S_ISFIFO(st.st_mode):
                # Reopening a pipe through /proc gives a new description of the same pipe.
                flags = os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC
                return os.open(f"/proc/self/fd/{self._fd}", flags)
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == os.stat(os.devnull).st_rdev:
                return os.dup(self._fd)
        except OSError:  # no /proc, or nobody reads the named pipe (ENXIO): the thread it is
            pass
        return None

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
            for chunk, count in pack_lines(map(_encoded, lines)):
                self._write_chunk(chunk, count)
            self._done += len(lines)
        return more

    def _take_batch(self, first: str | bytes | None) -> tuple[list[str | bytes], bool]:
        lines: list[str | bytes] = []
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


def _encoded(line: str | bytes) -> bytes:
    if isinstance(line, bytes):
        return line
    return line.encode("utf-8", "backslashreplace") + b"\n"


class LoopLines:
    """Access lines gathered in the event loop and written from it while the output takes
    them at once; handed to the writer's thread only when it would wait (see above).

    Not thread-safe: one event loop adds and flushes. A batch is written when it reaches
    ``PIPE_BUF`` bytes, and by `flush`, which the loop calls soon after the first line of a
    batch (``gather_s`` later: the proxy's flusher task) and at the end.
    """

    __slots__ = ("_fd", "_lines", "_room", "_writer", "wake")

    gather_s = _GATHER_S

    def __init__(self, writer: AccessLogWriter) -> None:
        self._writer = writer
        self._fd = writer.loop_fd()  # None: every line goes to the thread
        self._lines: list[str] = []
        # What the batch can still take before it reaches PIPE_BUF, in characters (bytes too,
        # unless a line is not ASCII); -1 while no batch is open (none kept, or no loop fd):
        # then `write` takes its longer way.
        self._room = -1
        self.wake: Callable[[], object] = lambda: None  # called for a batch's first line

    @property
    def pending(self) -> bool:
        return bool(self._lines)

    def write(self, line: str) -> None:
        """Keep one line (without its newline); write the batch if it is full."""
        room = self._room - len(line) - 1
        if room >= 0:  # (nearly every line: the open batch takes it)
            self._lines.append(line)
            self._room = room
            return
        if self._fd is None:
            self._writer.write(line)
            return
        if self._lines:  # full
            self.flush()
        self.wake()
        self._lines.append(line)
        self._room = PIPE_BUF - len(line) - 1

    def flush(self) -> None:
        """Write the lines kept, without waiting: here if the output takes them whole now,
        else through the thread. Never raises."""
        lines, self._lines, self._room = self._lines, [], -1
        if not lines:
            return
        if self._fd is not None and not self._writer.holds_lines:
            data = ("\n".join(lines) + "\n").encode("utf-8", "backslashreplace")
            if len(data) <= PIPE_BUF:  # (not ASCII, or one long line: the thread cuts it)
                try:
                    written = os.write(self._fd, data)
                except BlockingIOError:  # the pipe is full: the thread waits for room
                    written = 0
                except OSError:  # gone or broken: the thread finds out and says so
                    self._stop_writing()
                    written = 0
                if written == len(data):
                    return
                if written:  # (never for a pipe: a write up to PIPE_BUF is whole or refused)
                    self._writer.write(data[written:])
                    return
        for line in lines:
            self._writer.write(line)

    def _stop_writing(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        """Write what is kept (or hand it to the thread) and stop; the writer's own `close`
        then waits for the thread."""
        self.flush()
        self._stop_writing()


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
