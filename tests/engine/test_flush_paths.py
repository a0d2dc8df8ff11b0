"""`Peer.flush` in each of its paths (not a coroutine: in the usual one it returns the
fairness yield's trap, `_fairness.SHIELDED_YIELD`): sent at once, nothing queued, cancelled
before the write, a write that stops short, a peer gone; the trap it returns, which trio
resumes with ``Value(None)`` whatever happens meanwhile (nothing to unwrap); and
`Peer.send_message`, a message without a body queued and flushed in one call."""

from __future__ import annotations

import outcome
import pytest
import trio
import trio.testing

from trioproxy.core._errors import ClientError, ClientGone
from trioproxy.engine._fairness import SHIELDED, SHIELDED_YIELD
from trioproxy.engine._h11 import h11  # the proxy's parser: `send_message` sends its events
from trioproxy.engine._memory import MemoryTransport, memory_transport_pair
from trioproxy.engine._peer import Downstream, UpstreamConnection

from .test_fairness_yields import counting_my_steps


def answering(capacity: int = 1 << 20) -> tuple[Downstream, MemoryTransport]:
    """A client connection with a response head queued (h11 in SEND_BODY)."""
    ours, theirs = memory_transport_pair(capacity=capacity)
    down = Downstream(ours, h11.Connection(h11.SERVER))
    down.h11.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert isinstance(down.h11.next_event(), h11.Request)
    down.queue(h11.Response(status_code=200, headers=[("Content-Length", "10")]))
    return down, theirs


async def test_the_trap_passes_through_the_scheduler_once_and_gives_none_even_when_cancelled() -> (
    None
):
    await trio.lowlevel.checkpoint()
    with counting_my_steps() as counter, trio.CancelScope() as scope:
        scope.cancel()
        assert await SHIELDED_YIELD(SHIELDED) == outcome.Value(None)  # shielded: no Cancelled
        assert counter.steps == 1
    assert not scope.cancelled_caught


async def test_a_flush_sent_at_once_records_it_and_yields_while_another_task_is_runnable() -> None:
    down, theirs = answering()
    down.queue(h11.Data(data=b"0123456789"))
    queued = down.queued_bytes
    async with trio.open_nursery() as nursery:
        await trio.lowlevel.checkpoint()
        nursery.start_soon(trio.lowlevel.checkpoint)  # runnable from now on
        with counting_my_steps() as counter:
            await down.flush(1.0)
            assert counter.steps == 1
    assert down.bytes_sent == queued and not down.has_queued
    assert (theirs.read_nowait(1 << 20) or b"").endswith(b"0123456789")


async def test_two_flushes_sent_at_once_with_nothing_else_runnable_yield_once() -> None:
    down, _ = answering()
    await trio.lowlevel.checkpoint()
    with counting_my_steps() as counter:
        await down.flush(1.0)
        assert counter.steps == 0  # nobody else could have run: no scheduler pass
        down.queue(h11.Data(data=b"0123456789"))
        await down.flush(1.0)
        assert counter.steps == 1  # a second one in the same step yields


async def test_a_flush_with_nothing_queued_neither_sends_nor_yields() -> None:
    ours, _ = memory_transport_pair()
    down = Downstream(ours, h11.Connection(h11.SERVER))
    await trio.lowlevel.checkpoint()
    with counting_my_steps() as counter:
        await down.flush(1.0)
        assert counter.steps == 0
    assert down.bytes_sent == 0


async def test_a_cancelled_flush_sends_nothing_and_leaves_h11_unusable() -> None:
    down, theirs = answering()
    queued = down.queued_bytes
    with trio.CancelScope() as scope:
        scope.cancel()
        await down.flush(1.0)
    assert scope.cancelled_caught
    assert down.bytes_sent == 0 and down.queued_bytes == queued  # nothing lost either
    assert theirs.read_nowait(1 << 20) is None
    assert down.h11.our_state is h11.ERROR


async def test_a_flush_that_stops_short_waits_and_sends_the_rest_in_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    down, theirs = answering(capacity=8)
    down.queue(h11.Data(data=b"0123456789"))
    queued = down.queued_bytes
    received = bytearray()
    async with trio.open_nursery() as nursery:

        async def read_slowly() -> None:
            while len(received) < queued:
                await trio.sleep(0.1)
                received.extend(theirs.read_nowait(1 << 20) or b"")

        nursery.start_soon(read_slowly)
        await down.flush(5.0)
    assert received.endswith(b"0123456789") and down.bytes_sent == queued
    assert down.h11.our_state is h11.SEND_BODY  # still usable


async def test_a_flush_that_cannot_finish_in_time_leaves_h11_unusable(
    autojump_clock: trio.testing.MockClock,
) -> None:
    down, _ = answering(capacity=8)  # nobody reads
    with pytest.raises(ClientGone, match="stopped reading"):
        await down.flush(5.0)
    assert down.bytes_sent == 8 and down.h11.our_state is h11.ERROR


async def test_a_flush_to_a_gone_peer_keeps_the_bytes_queued_and_leaves_h11_unusable() -> None:
    down, theirs = answering()
    queued = down.queued_bytes
    theirs.reset()
    with pytest.raises(ClientGone):
        await down.flush(1.0)
    assert down.bytes_sent == 0 and down.queued_bytes == queued
    assert down.h11.our_state is h11.ERROR


def upstream() -> tuple[UpstreamConnection, MemoryTransport]:
    ours, theirs = memory_transport_pair()
    return UpstreamConnection(ours, h11.Connection(h11.CLIENT), "origin:80"), theirs


GET = h11.Request(method="GET", target="/", headers=[("Host", "origin")])
REQUEST_BYTES = b"GET / HTTP/1.1\r\nHost: origin\r\n\r\n"


async def test_a_message_without_a_body_goes_out_whole_in_one_write() -> None:
    up, theirs = upstream()
    await up.send_message(GET, 1.0)
    assert theirs.read_nowait(1 << 20) == REQUEST_BYTES
    assert up.bytes_sent == len(REQUEST_BYTES) and not up.has_queued
    assert up.h11.our_state is h11.DONE


async def test_a_message_whose_framing_has_an_end_is_sent_with_it() -> None:
    up, theirs = upstream()
    chunked = h11.Request(
        method="POST", target="/", headers=[("Host", "o"), ("Transfer-Encoding", "chunked")]
    )
    await up.send_message(chunked, 1.0)
    assert (theirs.read_nowait(1 << 20) or b"").endswith(b"\r\n\r\n0\r\n\r\n")
    assert up.h11.our_state is h11.DONE


async def test_a_message_goes_after_what_was_queued_before_it() -> None:
    up, theirs = upstream()
    up._out.append(b"before ")
    await up.send_message(GET, 1.0)
    assert theirs.read_nowait(1 << 20) == b"before " + REQUEST_BYTES


async def test_a_cancelled_message_sends_nothing_stays_queued_and_leaves_h11_unusable() -> None:
    up, theirs = upstream()
    with trio.CancelScope() as scope:
        scope.cancel()
        await up.send_message(GET, 1.0)
    assert scope.cancelled_caught
    assert up.bytes_sent == 0 and up.queued_bytes == len(REQUEST_BYTES)
    assert theirs.read_nowait(1 << 20) is None
    assert up.h11.our_state is h11.ERROR


async def test_a_message_h11_will_not_send_is_the_peers_own_error() -> None:
    up, _ = upstream()
    with pytest.raises(ClientError, match="cannot be forwarded"):
        up.send_message(h11.Response(status_code=200, headers=[]), 1.0)  # a client's side
    assert up.bytes_sent == 0 and not up.has_queued
