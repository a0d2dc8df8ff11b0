"""The lingering close (`Peer.linger`): a client that resets while the proxy drains what it
still sends ends the linger quietly (found by the simulation in fuzz/: an internal error)."""

from __future__ import annotations

import h11
import trio
import trio.testing

from trioproxy.engine._memory import memory_transport_pair
from trioproxy.engine._peer import Downstream


async def test_a_reset_while_lingering_ends_the_linger_quietly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ours, theirs = memory_transport_pair()
    down = Downstream(ours, h11.Connection(h11.SERVER))
    assert theirs.write_nowait(memoryview(b"more body")) == 9
    async with trio.open_nursery() as nursery:
        nursery.start_soon(down.linger, 2.0, 1 << 20)
        await trio.testing.wait_all_tasks_blocked()  # it read the body and waits for more
        assert down.bytes_received == 9
        theirs.reset()
    assert trio.current_time() < 2.0  # ended by the reset, not by the linger's deadline


async def test_a_client_that_just_closes_ends_the_linger_too(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ours, theirs = memory_transport_pair()
    down = Downstream(ours, h11.Connection(h11.SERVER))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(down.linger, 2.0, 1 << 20)
        await trio.testing.wait_all_tasks_blocked()
        theirs.close()
    assert trio.current_time() < 2.0
