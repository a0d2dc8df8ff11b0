"""The memory transport behaves as loopback TCP does where the proxy can tell.

The engine tests and the simulation trust it to: a writer blocks when the reader does not
read, a half-close reads as EOF, a close with input unread is a reset (what arrived before it
is read first, then the error, as on Linux), and a close wakes a task waiting on it.
"""

from __future__ import annotations

import errno

import pytest
import trio
import trio.testing

from trioproxy.engine._memory import memory_transport_pair


async def test_a_writer_is_held_back_when_the_reader_does_not_read() -> None:
    a, b = memory_transport_pair(capacity=4)
    assert a.write_nowait(memoryview(b"abcdef")) == 4
    assert a.write_nowait(memoryview(b"ef")) is None
    assert b.read_nowait(3) == b"abc"
    assert a.write_nowait(memoryview(b"ef")) == 2
    assert b.read_nowait(10) == b"def"
    assert b.read_nowait(10) is None


async def test_a_half_close_reads_as_eof_and_the_other_way_still_works() -> None:
    a, b = memory_transport_pair()
    a.write_nowait(memoryview(b"last"))
    a.shutdown_write()
    assert not b.peer_closed()  # bytes first: a pipelined request is not a close
    assert b.read_nowait(10) == b"last"
    assert b.peer_closed()
    assert b.read_nowait(10) == b""
    assert b.write_nowait(memoryview(b"answer")) == 6
    assert a.read_nowait(10) == b"answer"


async def test_closing_with_input_unread_resets_after_what_arrived() -> None:
    a, b = memory_transport_pair()
    b.write_nowait(memoryview(b"unread"))
    a.write_nowait(memoryview(b"sent before"))
    a.close()  # "unread" was never read: the peer sees a reset
    assert b.read_nowait(100) == b"sent before"
    with pytest.raises(ConnectionResetError):
        b.read_nowait(100)
    with pytest.raises(ConnectionResetError):
        b.write_nowait(memoryview(b"x"))
    with pytest.raises(OSError) as closed:
        a.read_nowait(1)
    assert closed.value.errno == errno.EBADF


async def test_a_close_wakes_a_task_waiting_on_the_connection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    a, _ = memory_transport_pair()
    async with trio.open_nursery() as nursery:
        outcome: list[str] = []

        async def wait() -> None:
            try:
                await a.wait_readable()
            except trio.ClosedResourceError:
                outcome.append("closed")

        nursery.start_soon(wait)
        await trio.testing.wait_all_tasks_blocked()
        a.close()
    assert outcome == ["closed"]
