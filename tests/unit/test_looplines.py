"""Access lines written from the event loop (`LoopLines`): in batches, straight to the pipe
while it takes them at once, through the writer's thread only when it would wait, in order,
never blocking and never torn; and the proxy's flusher that writes a batch soon after its
first line. (The thread alone: `test_logwriter`.)"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator

import pytest
import trio
import trio.testing

from trioproxy.app._logwriter import PIPE_BUF, AccessLogWriter, LoopLines
from trioproxy.app._run import _flush_access_lines

CAP_S = 10.0


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read_fd, write_fd = os.pipe()
    yield read_fd, write_fd
    for fd in (read_fd, write_fd):
        with contextlib.suppress(OSError):  # closed by the test
            os.close(fd)


def read_now(fd: int) -> bytes:
    os.set_blocking(fd, False)
    chunks = []
    try:
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
    except BlockingIOError:
        pass
    return b"".join(chunks)


def test_a_batch_goes_to_the_pipe_from_the_loop_in_one_write(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    writer = AccessLogWriter(write_fd)  # its thread never started: nothing may need it
    lines = LoopLines(writer)
    for number in range(5):
        lines.write(f"line {number}")
    assert read_now(read_fd) == b""  # gathered, not written line by line
    lines.flush()
    assert read_now(read_fd) == b"".join(b"line %d\n" % n for n in range(5))
    lines.close()
    assert writer.close(0.0) is True
    assert os.get_blocking(write_fd)  # the shared description keeps its flags


def test_a_full_batch_is_written_at_once_whole(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    lines = LoopLines(AccessLogWriter(write_fd))
    line = "x" * 99
    for _ in range(PIPE_BUF // 100 + 1):
        lines.write(line)
    written = read_now(read_fd)
    assert written == f"{line}\n".encode() * (PIPE_BUF // 100)  # whole lines, one batch
    assert len(written) <= PIPE_BUF
    lines.close()


def test_a_full_pipe_hands_lines_to_the_thread_and_order_holds(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    writer = AccessLogWriter(write_fd, max_queued_lines=100_000)
    writer.start()
    lines = LoopLines(writer)
    expected = [f"n{number} " + "y" * (number % 200) for number in range(5000)]
    for line in expected:  # far more than the pipe holds: the loop never waits for it
        lines.write(line)
    lines.flush()
    assert writer.holds_lines  # the pipe refused a batch: the thread has it
    received: list[str] = []
    while len(received) < len(expected):  # the reader comes back
        received.extend(os.read(read_fd, 1 << 16).decode().splitlines())
        lines.write(f"late {len(received)}")
        lines.flush()
    lines.close()
    assert writer.close(CAP_S) is True
    os.close(write_fd)
    received.extend(read_now(read_fd).decode().splitlines())
    body = [line for line in received if not line.startswith("late ")]
    assert body == expected
    late = [int(line.split()[1]) for line in received if line.startswith("late ")]
    assert late == sorted(late)  # later lines never overtook the thread's
    assert writer.dropped == 0


def test_a_gone_reader_never_raises_and_counts_the_lines(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    writer = AccessLogWriter(write_fd, diagnose=lambda message: None)
    writer.start()
    lines = LoopLines(writer)
    os.close(read_fd)
    lines.write("lost")
    lines.flush()
    lines.write("lost too")
    lines.close()
    writer.close(CAP_S)
    assert writer.dropped == 2


def test_which_outputs_the_loop_writes_itself(pipe: tuple[int, int]) -> None:
    _, write_fd = pipe
    with open(os.devnull, "wb") as devnull, tempfile.TemporaryFile() as file:
        for fd, direct in ((write_fd, True), (devnull.fileno(), True), (file.fileno(), False)):
            loop_fd = AccessLogWriter(fd).loop_fd()
            assert (loop_fd is not None) is direct
            if loop_fd is not None:
                os.close(loop_fd)


async def test_the_flusher_writes_a_batch_soon_after_its_first_line(
    pipe: tuple[int, int], autojump_clock: trio.testing.MockClock
) -> None:
    read_fd, write_fd = pipe
    lines = LoopLines(AccessLogWriter(write_fd))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_flush_access_lines, lines)
        await trio.testing.wait_all_tasks_blocked()
        lines.write("first")
        lines.write("second")
        await trio.sleep(lines.gather_s / 2)
        assert read_now(read_fd) == b""
        await trio.sleep(lines.gather_s)
        assert read_now(read_fd) == b"first\nsecond\n"
        await trio.sleep(10 * lines.gather_s)  # asleep while there is nothing to write
        lines.write("third")
        await trio.sleep(2 * lines.gather_s)
        assert read_now(read_fd) == b"third\n"
        nursery.cancel_scope.cancel()
    lines.close()
