"""The wire's reads and writes through a transport's socket calls (`Transport.calls`), and
what a send leaves queued: all of it sent at once, or the exact rest, in order."""

from __future__ import annotations

import h11
import pytest

from trioproxy.core._errors import ClientGone
from trioproxy.engine._memory import memory_transport_pair
from trioproxy.engine._peer import Downstream


def test_the_memory_calls_raise_blocking_io_error_where_the_transport_says_none() -> None:
    a, b = memory_transport_pair(capacity=4)
    with pytest.raises(BlockingIOError):
        b.calls.recv(10)  # nothing there
    assert a.calls.send(b"abcdef") == 4
    with pytest.raises(BlockingIOError):
        a.calls.send(memoryview(b"ef"))  # full
    assert b.calls.recv(10) == b"abcd"
    a.shutdown_write()
    assert b.calls.recv(10) == b""  # EOF


async def test_a_send_taken_whole_leaves_nothing_queued() -> None:
    ours, theirs = memory_transport_pair()
    down = Downstream(ours, h11.Connection(h11.SERVER))
    down._out.extend([b"head ", b"body"])
    assert down.send_queued_nowait()
    assert not down.has_queued and down.queued_bytes == 0 and down.bytes_sent == 9
    assert theirs.read_nowait(100) == b"head body"


async def test_a_send_taken_in_part_keeps_the_exact_rest_queued_then_sends_it_in_order() -> None:
    ours, theirs = memory_transport_pair(capacity=4)
    down = Downstream(ours, h11.Connection(h11.SERVER))
    down._out.append(b"abcdef")
    assert not down.send_queued_nowait()  # 4 taken
    assert down.queued_bytes == 2 and down.bytes_sent == 4
    down._out.append(b"gh")  # queued meanwhile: goes after the rest
    assert not down.send_queued_nowait()  # full: nothing taken, nothing lost
    assert down.queued_bytes == 4 and down.bytes_sent == 4
    received = theirs.read_nowait(100) or b""
    assert down.send_queued_nowait()
    received += theirs.read_nowait(100) or b""
    assert received == b"abcdefgh" and down.bytes_sent == 8 and not down.has_queued


async def test_a_send_that_fails_keeps_what_it_could_not_send_queued() -> None:
    ours, theirs = memory_transport_pair()
    down = Downstream(ours, h11.Connection(h11.SERVER))
    theirs.reset()
    down._out.append(b"never sent")
    with pytest.raises(ClientGone):
        down.send_queued_nowait()
    assert down.queued_bytes == len(b"never sent") and down.bytes_sent == 0


async def test_queue_sized_says_how_many_bytes_it_queued() -> None:
    ours, _ = memory_transport_pair()
    down = Downstream(ours, h11.Connection(h11.SERVER))
    down.h11.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert isinstance(down.h11.next_event(), h11.Request)
    before = down.queued_bytes
    size = down.queue_sized(h11.Response(status_code=200, headers=[("Content-Length", "0")]))
    assert size > 0 and down.queued_bytes == before + size
    assert down.queue_sized(h11.EndOfMessage()) == 0  # nothing to frame: nothing queued
    assert down.queued_bytes == before + size
