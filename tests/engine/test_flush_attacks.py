"""`Peer.flush` and `Peer.send_message` (no coroutines in their usual path) attacked where a
write stops short: cancelled while waiting for the rest, the peer resetting mid-message, a
a message queued after a cancelled flush. Each leaves h11 unusable (never reused) and counts
exactly the bytes that went out."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trioproxy.core._errors import ClientGone, UpstreamError
from trioproxy.engine._h11 import h11
from trioproxy.engine._memory import memory_transport_pair
from trioproxy.engine._peer import UpstreamConnection

from .test_flush_paths import answering


async def test_a_flush_cancelled_after_a_short_write_counts_it_and_leaves_h11_unusable(
    autojump_clock: trio.testing.MockClock,
) -> None:
    down, theirs = answering(capacity=8)
    down.queue(h11.Data(data=b"0123456789"))
    with trio.move_on_after(1.0) as scope:  # nobody reads: the rest waits, then is cancelled
        await down.flush(60.0)
    assert scope.cancelled_caught
    assert down.bytes_sent == 8 and theirs.read_nowait(1 << 20) is not None
    assert down.h11.our_state is h11.ERROR


async def test_nothing_is_queued_after_a_cancelled_flush(
    autojump_clock: trio.testing.MockClock,
) -> None:
    down, _ = answering(capacity=8)
    down.queue(h11.Data(data=b"0123456789"))
    with trio.move_on_after(1.0):
        await down.flush(60.0)
    assert down.h11.our_state is h11.ERROR
    with pytest.raises(UpstreamError, match="state is ERROR"):  # nothing new is queued
        down.queue(h11.Data(data=b"x"))


async def test_a_reset_in_the_middle_of_a_message_is_the_peers_error_and_unusable(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ours, theirs = memory_transport_pair(capacity=8)
    up = UpstreamConnection(ours, h11.Connection(h11.CLIENT), "a:80")
    request = h11.Request(method="GET", target="/" + "x" * 64, headers=[("Host", "a")])

    async def reset_soon() -> None:
        await trio.sleep(0.5)
        theirs.reset()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reset_soon)
        with pytest.raises((UpstreamError, ClientGone)):
            await up.send_message(request, 60.0)
    assert up.bytes_sent == 8
    assert up.h11.our_state is h11.ERROR and not up.reusable
