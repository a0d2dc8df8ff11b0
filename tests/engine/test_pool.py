"""The upstream pool without sockets, on the autojump clock: reuse, the idle cap, the busy
cap with its bounded wait, the age and idle limits, and connections the origin closed.

The pool's count is checked against the connections actually open (`MemoryProxy.upstream`)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trioproxy.engine._resolver import Resolver

from ..memnet import (
    MemoryNetwork,
    MemoryStream,
    ScriptedOrigin,
    fixed_lookup,
    memory_origin,
    memory_proxy,
    wait_until,
)
from ..support import make_settings, read_head


async def test_one_upstream_connection_serves_client_connections_in_turn(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network, origin = MemoryNetwork(), ScriptedOrigin()
    async with memory_origin(network, origin), memory_proxy(network=network) as proxy:
        for _ in range(3):
            async with proxy.client() as client:
                assert (await client.request(b"GET", b"/small")).status == 200
        pool = proxy.server.pool
        assert origin.accepted == 1
        assert (pool.stats.opened, pool.stats.reused) == (1, 2)
        assert pool.open_count == pool.idle_count == proxy.upstream_open == 1


async def test_pool_size_bounds_the_idle_connections_kept(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network, origin = MemoryNetwork(), ScriptedOrigin()
    settings = make_settings(upstream__pool_size=2, upstream__idle_timeout_s=600.0)
    async with memory_origin(network, origin), memory_proxy(settings, network) as proxy:
        async with trio.open_nursery() as nursery:
            for _ in range(4):

                async def one() -> None:
                    async with proxy.client() as client:
                        assert (await client.request(b"GET", b"/slow/5")).status == 200

                nursery.start_soon(one)
        pool = proxy.server.pool
        assert origin.accepted == 4  # busy connections are not capped by pool_size
        assert pool.open_count == pool.idle_count == proxy.upstream_open == 2
        await wait_until(lambda: origin.open == 2)  # the other two were closed


async def test_max_connections_makes_a_request_wait_then_503_after_pool_wait_s(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network, origin = MemoryNetwork(), ScriptedOrigin()
    settings = make_settings(upstream__max_connections=1, timeouts__pool_wait_s=5.0)
    async with memory_origin(network, origin), memory_proxy(settings, network) as proxy:
        async with proxy.client() as holder, proxy.client() as waiter:
            await holder.stream.send_all(b"GET /slow/30 HTTP/1.1\r\nHost: x\r\n\r\n")
            await wait_until(lambda: origin.targets == [b"/slow/30"])
            started = trio.current_time()
            reply = await waiter.request(b"GET", b"/small")
            assert reply.status == 503
            assert 5.0 <= trio.current_time() - started < 6.0
            assert proxy.server.pool.waiting_count == 0
            assert (await holder.read_reply()).status == 200
        assert proxy.upstream_open == proxy.server.pool.idle_count == 1
    assert origin.targets == [b"/slow/30"]
    assert proxy.upstream_open == proxy.server.pool.open_count == 0  # closed with the server


async def test_a_waiting_request_gets_the_connection_as_soon_as_it_is_freed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network, origin = MemoryNetwork(), ScriptedOrigin()
    settings = make_settings(upstream__max_connections=1, timeouts__pool_wait_s=5.0)
    async with memory_origin(network, origin), memory_proxy(settings, network) as proxy:
        async with proxy.client() as holder, proxy.client() as waiter:
            await holder.stream.send_all(b"GET /slow/2 HTTP/1.1\r\nHost: x\r\n\r\n")
            await wait_until(lambda: origin.targets == [b"/slow/2"])
            started = trio.current_time()
            reply = await waiter.request(b"GET", b"/small")
            assert reply.status == 200
            assert trio.current_time() - started == 2.0  # the moment the first one ended
    assert origin.accepted == 1
    assert proxy.server.pool.stats.waited >= 1


async def test_a_connection_older_than_max_connection_age_s_is_not_reused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network, origin = MemoryNetwork(), ScriptedOrigin()
    settings = make_settings(upstream__max_connection_age_s=5.0, upstream__idle_timeout_s=600.0)
    async with memory_origin(network, origin), memory_proxy(settings, network) as proxy:
        async with proxy.client() as client:
            assert (await client.request(b"GET", b"/small")).status == 200
            await trio.sleep(3.0)  # virtual: younger than its maximum age
            assert (await client.request(b"GET", b"/small")).status == 200
            assert origin.accepted == 1
            await trio.sleep(10.0)
            assert (await client.request(b"GET", b"/small")).status == 200
            assert origin.accepted == 2
            assert proxy.upstream_open == proxy.server.pool.open_count == 1


async def test_idle_upstream_connections_expire_after_idle_timeout_s(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network, origin = MemoryNetwork(), ScriptedOrigin()
    settings = make_settings(upstream__idle_timeout_s=4.0)
    async with memory_origin(network, origin), memory_proxy(settings, network) as proxy:
        async with proxy.client() as client:
            assert (await client.request(b"GET", b"/small")).status == 200
            released = trio.current_time()
            await wait_until(lambda: proxy.server.pool.open_count == 0)
            assert 4.0 <= trio.current_time() - released <= 6.0  # the reaper runs every 2 s
            assert proxy.upstream_open == 0
            await wait_until(lambda: origin.open == 0)
    assert proxy.server.pool.stats.expired == 1


async def test_a_connection_the_origin_closed_while_idle_is_not_reused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network, origin = MemoryNetwork(), ScriptedOrigin()
    async with memory_origin(network, origin), memory_proxy(network=network) as proxy:
        async with proxy.client() as client:
            # /close: the origin answers (keep-alive by its headers), then hangs up.
            assert (await client.request(b"GET", b"/close")).status == 200
            await wait_until(lambda: origin.open == 0)
            assert proxy.server.pool.idle_count == 1  # the proxy has not looked yet
            assert (await client.request(b"GET", b"/small")).status == 200
        assert proxy.upstream_open == proxy.server.pool.open_count == 1
    assert origin.accepted == 2
    assert proxy.server.ctx.stats.retries == 0  # seen dead before use: no failed attempt


async def test_bytes_past_a_response_keep_its_connection_out_of_the_pool(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    smuggled = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nSECRET"

    async def extra_bytes(stream: MemoryStream) -> None:
        while await read_head(stream):  # type: ignore[arg-type]
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + smuggled)

    async with memory_origin(network, extra_bytes), memory_proxy(network=network) as proxy:
        async with proxy.client() as client:
            assert (await client.request(b"GET", b"/")).body == b"ok"
            assert (await client.request(b"GET", b"/")).body == b"ok"
        assert proxy.upstream_open == proxy.server.pool.open_count == 0
    assert len(proxy.upstream) == 2


async def test_a_server_being_cancelled_asks_its_stopped_resolver_for_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The resolver's nursery ends before the pool closes; a connection given back, taken,
    or opened in between (the cancellation not delivered yet) must not start a lookup there:
    no RuntimeError, and a request that would wait for one is cancelled with the rest."""
    resolver = Resolver("next-hop", 80, ttl_s=0.0, lookup=fixed_lookup)
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            await nursery.start(resolver.run)
            scope.cancel()
            with trio.CancelScope(shield=True):
                await trio.testing.wait_all_tasks_blocked()  # resolver.run has ended
            resolver.refresh_if_stale()  # (a connection given back): nothing to do
            with pytest.raises(trio.Cancelled):
                await resolver.resolve(trio.current_time() + 10.0)
                pytest.fail("resolved while the server was being cancelled")
    with pytest.raises(RuntimeError, match="not running"):  # outside a cancellation: misuse
        await resolver.resolve(trio.current_time() + 10.0)


async def test_a_client_that_left_while_waiting_for_a_slot_is_never_sent_upstream(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network, origin = MemoryNetwork(), ScriptedOrigin()
    settings = make_settings(upstream__max_connections=1, timeouts__pool_wait_s=30.0)
    async with memory_origin(network, origin), memory_proxy(settings, network) as proxy:
        async with proxy.client() as holder:
            await holder.stream.send_all(b"GET /slow/5 HTTP/1.1\r\nHost: x\r\n\r\n")
            await wait_until(lambda: origin.targets == [b"/slow/5"])
            leaver = proxy.open()
            await leaver.send_all(b"GET /left HTTP/1.1\r\nHost: x\r\n\r\n")
            await wait_until(lambda: proxy.server.pool.waiting_count == 1)
            await leaver.aclose()
            assert (await holder.read_reply()).status == 200
            await proxy.logged(2)
            pool = proxy.server.pool
            assert pool.open_count == pool.idle_count == proxy.upstream_open == 1  # given back
    assert origin.targets == [b"/slow/5"]
    assert sorted(r.status for r in proxy.records) == [200, 499]
