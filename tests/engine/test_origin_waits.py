"""Waiting for an origin's response head without a cancel scope (`OriginWaits`): the request
sits in the server's registry, whose reaper wakes it at the client-watch mark; a quick answer
just leaves. The wake closes nothing and loses no byte, the deadlines stay as documented, and
the registry holds nothing once the wait ends, however it ends."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trioproxy.engine._context import OriginWaits
from trioproxy.engine._h11 import h11
from trioproxy.engine._memory import memory_transport_pair
from trioproxy.engine._peer import UpstreamConnection

from ..memnet import MemoryStream, memory_proxy, scripted_proxy, wait_until
from ..support import make_settings, read_head


async def test_a_quick_answer_leaves_the_registry_and_sets_no_deadline_of_its_own(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scripted_proxy() as (proxy, origin):
        waits = proxy.server.ctx.origin_waits
        stream = proxy.open()
        await stream.send_all(b"GET /slow/0.5 HTTP/1.1\r\nHost: x\r\n\r\n")
        await wait_until(lambda: origin.targets == [b"/slow/0.5"])
        await trio.testing.wait_all_tasks_blocked()
        assert len(waits) == 1  # waiting, registered (the reaper knows when to look)
        await proxy.logged()
        assert proxy.records[0].status == 200
        assert len(waits) == 0
        await stream.aclose()


async def test_an_answer_slower_than_the_watch_mark_still_arrives_whole(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scripted_proxy() as (proxy, _origin):
        async with proxy.client() as client:
            started = trio.current_time()
            reply = await client.request(b"GET", b"/slow/5")
            assert 5.0 <= trio.current_time() - started < 5.5
            again = await client.request(b"GET", b"/slow/1.5")  # the same connections, reused
        assert (reply.status, reply.body, again.status) == (200, b"ok", 200)
        assert len(proxy.server.ctx.origin_waits) == 0
        assert proxy.server.pool.idle_count == 1  # the woken wait closed nothing


async def test_a_silent_origin_still_gets_its_504_at_the_response_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def silent(stream: MemoryStream) -> None:
        await read_head(stream)
        await trio.sleep_forever()

    settings = make_settings(timeouts__upstream_response_s=7.0)
    async with memory_proxy(settings, origin=silent) as proxy:
        async with proxy.client() as client:
            started = trio.current_time()
            reply = await client.request(b"GET", b"/")
            assert 7.0 <= trio.current_time() - started < 7.5
        assert reply.status == 504
        assert len(proxy.server.ctx.origin_waits) == 0


async def test_a_client_gone_before_the_watch_mark_is_seen_at_the_mark(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scripted_proxy() as (proxy, origin):
        stream = proxy.open()
        await stream.send_all(b"GET /slow/600 HTTP/1.1\r\nHost: x\r\n\r\n")
        await wait_until(lambda: origin.targets == [b"/slow/600"])
        asked = trio.current_time()
        await stream.aclose()
        await proxy.logged()
        assert 1.0 <= trio.current_time() - asked < 1.5  # woken at the mark, then it looks
        assert proxy.records[0].status == 499
        assert len(proxy.server.ctx.origin_waits) == 0
        assert proxy.upstream_open == 0 and proxy.server.pool.open_count == 0  # discarded
        await wait_until(lambda: proxy.server.ctx.stats.connections_open == 0)
        proxy.check_no_leak()
        proxy.check_no_leak()


async def test_many_waits_ended_every_way_leave_nothing_registered(
    autojump_clock: trio.testing.MockClock,
) -> None:
    settings = make_settings(timeouts__upstream_response_s=3.0)
    async with scripted_proxy(settings) as (proxy, _origin):
        waits = proxy.server.ctx.origin_waits

        async def one(target: bytes, leave_after_s: float | None) -> None:
            stream = proxy.open()
            await stream.send_all(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % target)
            if leave_after_s is not None:
                await trio.sleep(leave_after_s)
                await stream.aclose()
                return
            async with stream:
                await read_head(stream)

        async with trio.open_nursery() as nursery:
            for i in range(30):
                target, leave = [
                    (b"/small", None),  # answered at once
                    (b"/slow/0.3", None),  # before the mark
                    (b"/slow/2", None),  # after it
                    (b"/slow/600", None),  # 504
                    (b"/slow/600", 0.5),  # gone before the mark
                    (b"/slow/600", 1.7),  # gone after it
                ][i % 6]
                nursery.start_soon(one, target, leave)
        await proxy.logged(30)
        assert len(waits) == 0
        statuses = sorted(r.status for r in proxy.records)
        assert statuses == [200] * 15 + [499] * 10 + [504] * 5


@pytest.mark.parametrize("ends", ["answered", "cancelled", "closed"])
async def test_the_entry_is_discarded_however_the_wait_ends(
    ends: str, autojump_clock: trio.testing.MockClock
) -> None:
    waits = OriginWaits()
    ours, theirs = memory_transport_pair()
    up = UpstreamConnection(ours, _client_h11(), "origin")
    outcome: list[object] = []
    scope = trio.CancelScope()

    async def wait() -> None:
        with scope:
            try:
                outcome.append(await up.wait_readable_or_woken(waits, trio.current_time() + 1.0))
            except Exception as exc:
                outcome.append(type(exc).__name__)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waits.reap)
        nursery.start_soon(wait)
        await trio.testing.wait_all_tasks_blocked()
        assert len(waits) == 1
        if ends == "answered":
            theirs.write_nowait(memoryview(b"HTTP/1.1"))
        elif ends == "cancelled":
            scope.cancel()
        else:
            ours.close()
        await trio.testing.wait_all_tasks_blocked()
        assert len(waits) == 0
        nursery.cancel_scope.cancel()
    expected = {"answered": [True], "cancelled": [], "closed": ["UpstreamClosed"]}[ends]
    assert outcome == expected


async def test_a_woken_wait_loses_no_byte_and_closes_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    waits = OriginWaits()
    ours, theirs = memory_transport_pair()
    up = UpstreamConnection(ours, _client_h11(), "origin")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(waits.reap)
        started = trio.current_time()
        assert await up.wait_readable_or_woken(waits, started + 1.0) is False
        assert trio.current_time() - started == pytest.approx(1.0)
        assert len(waits) == 0 and not ours.closed
        theirs.write_nowait(memoryview(b"late"))
        assert await up.wait_readable_or_woken(waits, trio.current_time() + 1.0) is True
        assert await up.recv(1.0) == b"late"
        nursery.cancel_scope.cancel()


def _client_h11() -> h11.Connection:
    return h11.Connection(h11.CLIENT)


async def test_a_reused_connection_closed_after_the_mark_is_retried_on_a_fresh_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    connections = 0

    async def closes_its_first_connection_late(stream: MemoryStream) -> None:
        nonlocal connections
        connections += 1
        first = connections == 1
        answers = 0
        while await read_head(stream):
            if first and answers == 1:  # the reused connection's request: no answer
                await trio.sleep(1.3)  # past the mark: the wait was woken, the client watched
                await stream.aclose()
                return
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            answers += 1

    async with memory_proxy(make_settings(), origin=closes_its_first_connection_late) as proxy:
        async with proxy.client() as client:
            first = await client.request(b"GET", b"/")
            started = trio.current_time()
            second = await client.request(b"GET", b"/")
            assert 1.3 <= trio.current_time() - started < 1.5
        assert (first.status, second.status, second.body) == (200, 200, b"ok")
        assert proxy.server.ctx.stats.retries == 1 and connections == 2
        assert len(proxy.server.ctx.origin_waits) == 0
        await wait_until(lambda: proxy.server.ctx.stats.connections_open == 0)
        proxy.check_no_leak()
