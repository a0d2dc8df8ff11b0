"""`IdleConnections`: each idle connection is closed at its own deadline by one reaper task
per server, whatever order the deadlines come in; the oldest goes first when a newcomer needs
its slot; and an idle connection holds no cancel scope of its own."""

from __future__ import annotations

import contextlib
import gc

import trio
import trio.testing

from trioproxy.config._settings import Limits
from trioproxy.engine._context import IdleConnections
from trioproxy.engine._memory import MemoryTransport, memory_transport_pair
from trioproxy.engine._peer import Downstream, server_h11

from ..memnet import scripted_proxy, wait_until


def _downstream() -> Downstream:
    return Downstream(memory_transport_pair()[0], server_h11(Limits()))


async def _closed_at(down: Downstream, started: float) -> float:
    """Seconds from ``started`` until ``down`` is closed, to 0.1 s (`wait_until` polls)."""
    await wait_until(lambda: down.closed)
    return round(trio.current_time() - started, 1)


async def test_each_connection_is_closed_at_its_own_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    idle = IdleConnections()
    long_wait, later_short, kept = _downstream(), _downstream(), _downstream()
    async with trio.open_nursery() as nursery:
        await nursery.start(idle.reap)
        started = trio.current_time()
        idle.add(long_wait, 75.0)
        idle.add(kept, 75.0)
        await trio.sleep(1.0)
        idle.add(later_short, 10.0)  # ends before the one the reaper sleeps towards
        assert await _closed_at(later_short, started) == 11.0
        assert not long_wait.closed
        assert idle.discard(kept, 75.0)  # it left: not closed, not waited on
        assert await _closed_at(long_wait, started) == 75.0
        assert not kept.closed and not idle
        assert not idle.discard(long_wait, 75.0)  # closed by the reaper: its wait is over
        nursery.cancel_scope.cancel()


async def test_the_oldest_goes_first_whatever_its_wait(
    autojump_clock: trio.testing.MockClock,
) -> None:
    idle = IdleConnections()
    first, second, third = _downstream(), _downstream(), _downstream()
    idle.add(first, 600.0)
    await trio.sleep(1.0)
    idle.add(second, 10.0)  # expires first, but came later
    await trio.sleep(1.0)
    idle.add(third, 600.0)
    assert idle.close_oldest() and first.closed and not second.closed
    assert idle.close_oldest() and second.closed and not third.closed
    idle.close_all()
    assert third.closed and not idle.close_oldest()


async def test_a_silent_newcomer_is_closed_at_the_head_deadline_while_another_idles_longer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with (
        scripted_proxy(timeouts__client_header_s=10.0, timeouts__client_idle_s=75.0) as (
            proxy,
            _origin,
        ),
        proxy.client() as kept_alive,
    ):
        assert (await kept_alive.request(b"GET", b"/small")).status == 200
        answered = trio.current_time()
        await trio.sleep(5.0)
        async with proxy.open() as silent:
            opened = trio.current_time()
            with trio.fail_after(20):
                assert await silent.receive_some(1) == b""
            assert 10.0 <= trio.current_time() - opened < 11.0
        with trio.fail_after(100):
            assert await kept_alive.stream.receive_some(1) == b""
        assert 75.0 <= trio.current_time() - answered < 76.0


def _cancel_scopes() -> int:
    return sum(isinstance(o, trio.CancelScope) for o in gc.get_objects())


async def test_an_idle_connection_holds_no_cancel_scope(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scripted_proxy() as (proxy, _origin), contextlib.AsyncExitStack() as clients:
        for count in (1, 21):
            while len(proxy.server.ctx.idle) < count:
                client = await clients.enter_async_context(proxy.client())
                assert (await client.request(b"GET", b"/small")).status == 200
                await trio.testing.wait_all_tasks_blocked()
            if count == 1:
                before = _cancel_scopes()
        # (The test's own clients hold none per connection either.)
        assert _cancel_scopes() - before < 20


class _FailingClose(MemoryTransport):
    """A transport whose close reports an error, as `close(2)` may (the fd is gone anyway).
    (The transport, not Downstream, is subclassed: the compiled build's classes allow none.)"""

    __slots__ = ()

    def close(self) -> None:
        super().close()
        raise OSError(5, "Input/output error")


async def test_a_close_that_fails_ends_one_connection_not_the_server(
    autojump_clock: trio.testing.MockClock,
) -> None:
    idle = IdleConnections()
    failing = [Downstream(_failing_transport(), server_h11(Limits())) for _ in range(3)]
    after = _downstream()
    async with trio.open_nursery() as nursery:
        await nursery.start(idle.reap)
        started = trio.current_time()
        idle.add(failing[0], 1.0)  # the reaper's
        idle.add(after, 2.0)
        assert await _closed_at(after, started) == 2.0  # the reaper went on
        idle.add(failing[1], 5.0)
        assert idle.close_oldest()  # the accept loop's
        idle.add(failing[2], 5.0)
        idle.close_all()  # the drain's
        assert all(down.closed for down in failing)
        nursery.cancel_scope.cancel()


def _failing_transport() -> MemoryTransport:
    transport = memory_transport_pair()[0]
    transport.__class__ = _FailingClose  # the same slots: only close() differs
    return transport
