"""`Transport.wake_waiters` on TCP and on memory alike: the task waiting on a connection
wakes with trio.ClosedResourceError, and the connection stays open, loses no byte and can be
waited on again (what `OriginWaits` relies on to wake a request without a cancel scope)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trioproxy.engine._transport import Transport

from .test_transport_parity import PAIRS

pytestmark = pytest.mark.parametrize("kind", list(PAIRS))


async def woken(end: Transport) -> str:
    """How a wait on ``end`` ends when another task wakes its waiters."""
    outcome = "returned"

    async def wait() -> None:
        nonlocal outcome
        try:
            await end.wait_readable()
        except trio.ClosedResourceError:
            outcome = "woken"

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait)
            await trio.testing.wait_all_tasks_blocked()
            end.wake_waiters()
    return outcome


async def test_a_woken_wait_leaves_the_connection_open_and_whole(kind: str) -> None:
    async with PAIRS[kind]() as (a, b):
        assert await woken(a) == "woken"
        assert not a.closed and a.read_nowait(100) is None  # nothing lost, nothing there
        assert b.write_nowait(memoryview(b"after")) == 5
        with trio.fail_after(5):
            await a.wait_readable()  # waited on again: registered afresh
        assert a.read_nowait(100) == b"after"
        assert a.write_nowait(memoryview(b"back")) == 4
        with trio.fail_after(5):
            await b.wait_readable()
        assert b.read_nowait(100) == b"back"


async def test_waking_with_nobody_waiting_changes_nothing(kind: str) -> None:
    async with PAIRS[kind]() as (a, b):
        a.wake_waiters()
        assert b.write_nowait(memoryview(b"x")) == 1
        with trio.fail_after(5):
            await a.wait_readable()  # not woken by the earlier call
        assert a.read_nowait(100) == b"x"


async def test_waking_a_closed_connection_is_harmless(kind: str) -> None:
    async with PAIRS[kind]() as (a, _b):
        a.close()
        a.wake_waiters()
        assert a.closed
