"""The upstream pool without sockets, on the autojump clock: reuse, the idle cap, the busy
cap with its bounded wait, the age and idle limits, and connections the origin closed.

The pool's count is checked against the connections actually open (`MemoryProxy.upstream`).
Then, modelled on httpcore's tests/test_cancellations.py: cancel in the middle of an exchange,
and assert that the pool holds no connection in a half-finished state; and the pool alone,
connecting through the memory network (those came from e2e/test_pool.py, on loopback); and
connections an origin poisoned by sending past its framing (from e2e/test_hardening.py)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from trioproxy.config._settings import Settings
from trioproxy.core._errors import PoolTimeout
from trioproxy.engine._h11 import h11  # the proxy's parser: its connections are inspected here
from trioproxy.engine._peer import UpstreamConnection
from trioproxy.engine._pool import PoolLimits, UpstreamPool
from trioproxy.engine._resolver import Resolver, SockAddr

from ..memnet import (
    ORIGIN_ADDRESS,
    MemoryNetwork,
    MemoryStream,
    ScriptedOrigin,
    fixed_lookup,
    in_flight,
    memory_origin,
    memory_proxy,
    scripted_proxy,
    wait_until,
)
from ..support import make_settings, read_head


async def test_one_upstream_connection_serves_client_connections_in_turn(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scripted_proxy() as (proxy, origin):
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
    async with scripted_proxy(upstream__pool_size=2, upstream__idle_timeout_s=600.0) as (
        proxy,
        origin,
    ):
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


@pytest.mark.parametrize(
    ("busy_s", "status", "waited_s", "targets"),
    [
        pytest.param(2, 200, 2.0, [b"/slow/2", b"/small"], id="served-the-moment-it-is-freed"),
        pytest.param(30, 503, 5.0, [b"/slow/30"], id="503-after-pool_wait_s"),
    ],
)
async def test_max_connections_makes_a_request_wait_for_a_freed_connection_up_to_pool_wait_s(
    autojump_clock: trio.testing.MockClock,
    busy_s: int,
    status: int,
    waited_s: float,
    targets: list[bytes],
) -> None:
    settings = make_settings(upstream__max_connections=1, timeouts__pool_wait_s=5.0)
    async with scripted_proxy(settings) as (proxy, origin):
        async with proxy.client() as holder, proxy.client() as waiter:
            await in_flight(holder, origin, b"/slow/%d" % busy_s)
            started = trio.current_time()
            reply = await waiter.request(b"GET", b"/small")
            assert reply.status == status
            assert trio.current_time() - started == waited_s
            assert proxy.server.pool.waiting_count == 0
            assert (await holder.read_reply()).status == 200
        assert proxy.upstream_open == proxy.server.pool.idle_count == 1
    assert origin.targets == targets
    assert origin.accepted == 1
    assert proxy.server.pool.stats.waited >= 1
    assert proxy.upstream_open == proxy.server.pool.open_count == 0  # closed with the server


async def test_a_connection_older_than_max_connection_age_s_is_not_reused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scripted_proxy(
        upstream__max_connection_age_s=5.0, upstream__idle_timeout_s=600.0
    ) as (proxy, origin):
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
    async with scripted_proxy(upstream__idle_timeout_s=4.0) as (proxy, origin):
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
    async with scripted_proxy() as (proxy, origin):
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
    smuggled = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nSECRET"

    async def extra_bytes(stream: MemoryStream) -> None:
        while await read_head(stream):
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + smuggled)

    async with memory_proxy(origin=extra_bytes) as proxy:
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
            # (a connection given back): nothing to do
            resolver.refresh_if_stale(trio.current_time())
            with pytest.raises(trio.Cancelled):
                await resolver.resolve(trio.current_time() + 10.0)
                pytest.fail("resolved while the server was being cancelled")
    with pytest.raises(RuntimeError, match="not running"):  # outside a cancellation: misuse
        await resolver.resolve(trio.current_time() + 10.0)


async def test_a_client_that_left_while_waiting_for_a_slot_is_never_sent_upstream(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scripted_proxy(upstream__max_connections=1, timeouts__pool_wait_s=30.0) as (
        proxy,
        origin,
    ):
        async with proxy.client() as holder:
            await in_flight(holder, origin, b"/slow/5")
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


# --- Cancelled and abandoned exchanges (from e2e/test_pool.py) ---------------------------------


def resolver(ttl_s: float) -> Resolver:
    return Resolver("next-hop", 80, ttl_s=ttl_s, lookup=fixed_lookup)


@asynccontextmanager
async def running_pool(
    limits: PoolLimits, resolver: Resolver, *addresses: tuple[str, int]
) -> AsyncIterator[UpstreamPool]:
    """The pool alone, running, connecting through a memory network to origins (at
    ``addresses``; by default the one the fixed lookup answers) that keep every connection
    open and say nothing."""

    async def keeps_open(stream: MemoryStream) -> None:
        await trio.sleep_forever()

    network = MemoryNetwork()
    async with contextlib.AsyncExitStack() as origins:
        for address in addresses or (ORIGIN_ADDRESS,):
            await origins.enter_async_context(memory_origin(network, keeps_open, address))
        pool = UpstreamPool(resolver, limits, network.connect)
        async with trio.open_nursery() as nursery:
            await nursery.start(pool.run)
            yield pool
            nursery.cancel_scope.cancel()


async def test_pool_never_opens_more_than_its_size(
    autojump_clock: trio.testing.MockClock,
) -> None:
    concurrent = 0
    most = 0
    release = trio.Event()

    async def slow_origin(stream: MemoryStream) -> None:
        nonlocal concurrent, most
        concurrent += 1
        most = max(most, concurrent)
        try:
            while await read_head(stream):
                await release.wait()
                await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        finally:
            concurrent -= 1

    settings = make_settings(upstream__max_connections=2)
    statuses: list[int] = []
    async with memory_proxy(settings, origin=slow_origin) as proxy:

        async def one() -> None:
            async with proxy.client() as client:
                statuses.append((await client.request(b"GET", b"/")).status)

        async with trio.open_nursery() as nursery:
            for _ in range(6):
                nursery.start_soon(one)
            # four requests queue for a slot
            await wait_until(lambda: proxy.server.pool.waiting_count == 4)
            assert proxy.server.pool.open_count == 2
            release.set()
    assert statuses == [200] * 6
    assert most == 2


async def test_full_pool_wait_is_bounded_503(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def stuck(stream: MemoryStream) -> None:
        await read_head(stream)
        await trio.sleep_forever()

    settings = make_settings(
        upstream__max_connections=1, timeouts__pool_wait_s=0.1, timeouts__upstream_response_s=30
    )
    async with memory_proxy(settings, origin=stuck) as proxy:
        async with trio.open_nursery() as nursery:
            first = proxy.client()
            client = await first.__aenter__()
            nursery.start_soon(client.request, b"GET", b"/occupies-the-only-connection")
            await wait_until(lambda: proxy.server.pool.open_count == 1)
            async with proxy.client() as second:
                reply = await second.request(b"GET", b"/")
            assert reply.status == 503
            nursery.cancel_scope.cancel()
            await first.__aexit__(None, None, None)


async def test_client_gone_mid_upload_leaves_no_broken_connection_in_pool(
    autojump_clock: trio.testing.MockClock,
) -> None:
    got_part = trio.Event()

    async def reads_slowly(stream: MemoryStream) -> None:
        await read_head(stream)
        got_part.set()
        await trio.sleep_forever()

    async with memory_proxy(origin=reads_slowly) as proxy:
        stream = proxy.open()
        # More than the read-ahead buffer (64 KiB), so the head goes upstream mid-body.
        await stream.send_all(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + b"p" * 70000
        )
        await got_part.wait()
        assert proxy.server.pool.open_count == 1
        await stream.aclose()  # the client gives up mid-body
        await wait_until(lambda: not proxy.server.ctx.stats.connections_open)
        assert proxy.server.pool.open_count == 0
        assert proxy.server.pool.idle_count == 0
    assert proxy.records[-1].status == 499  # logged as nginx does: client closed request


async def test_client_gone_mid_download_discards_the_upstream_connection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The proxy learns that the client left when its next write fails; the upstream
    connection is then closed, not pooled, and the origin sees that."""
    origin_saw_close = trio.Event()

    async def trickles(stream: MemoryStream) -> None:
        await read_head(stream)
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n")
        try:
            for _ in range(10_000):  # bounded: 10 s at most
                await stream.send_all(b"x" * 1000)
                await trio.sleep(0.001)
        except trio.BrokenResourceError:
            origin_saw_close.set()

    async with memory_proxy(origin=trickles) as proxy:
        stream = proxy.open()
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert await stream.receive_some(100)
        await stream.aclose()
        await origin_saw_close.wait()
        assert proxy.server.pool.open_count == 0
        assert proxy.server.pool.idle_count == 0
    assert proxy.records[-1].status == 200  # the head had gone out
    assert proxy.records[-1].bytes_sent < 100_000_000


async def test_cancelling_requests_midway_keeps_the_pool_consistent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Cancel clients at many points of an exchange; afterwards the pool's count of open
    connections equals what it really holds, and a request still succeeds."""

    async def origin(stream: MemoryStream) -> None:
        while await read_head(stream):
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
            await trio.sleep(0.001)
            await stream.send_all(b"hello")

    settings = make_settings(upstream__pool_size=4)
    async with memory_proxy(settings, origin=origin) as proxy:
        for delay in (0, 0.0002, 0.0005, 0.001, 0.002):
            async with trio.open_nursery() as nursery:
                for _ in range(4):

                    async def one() -> None:
                        async with proxy.client() as client:
                            await client.request(b"GET", b"/")

                    nursery.start_soon(one)
                await trio.sleep(delay)
                nursery.cancel_scope.cancel()
        await wait_until(lambda: not proxy.server.ctx.stats.connections_open)
        pool = proxy.server.pool
        assert pool.open_count == pool.idle_count <= 4
        for conn in pool._idle:  # each idle one is ready for a new exchange
            assert (conn.h11.our_state, conn.h11.their_state) == (h11.IDLE, h11.IDLE)
            assert not conn.has_queued
        async with proxy.client() as client:
            assert (await client.request(b"GET", b"/")).body == b"hello"


async def test_idle_connections_expire(autojump_clock: trio.testing.MockClock) -> None:
    """The reaper closes idle connections after idle_timeout_s, on the (mock) clock."""
    async with running_pool(PoolLimits(idle_timeout_s=4.0), resolver(ttl_s=5)) as pool:
        conn, reused, _ = await pool.acquire()
        assert not reused
        # A connection that finished an exchange (both sides DONE) is kept:
        _finish_exchange(conn)
        pool.release(conn)
        assert pool.idle_count == 1
        await trio.sleep(3.0)
        assert pool.idle_count == 1
        await trio.sleep(2.5)
        assert pool.idle_count == 0
        assert pool.open_count == 0
        assert pool.stats.expired == 1


async def test_acquire_times_out_when_full(autojump_clock: trio.testing.MockClock) -> None:
    limits = PoolLimits(max_connections=1, wait_timeout_s=2)
    async with running_pool(limits, resolver(ttl_s=5)) as pool:
        conn, _, _ = await pool.acquire()
        started = trio.current_time()
        try:
            await pool.acquire()
        except PoolTimeout:
            assert trio.current_time() - started == 2
        else:
            raise AssertionError("acquire should have timed out")
        pool.discard(conn)
        assert pool.open_count == 0


def _finish_exchange(conn: object) -> None:
    """Walk an upstream connection's h11 state machine through one complete exchange."""

    assert isinstance(conn, UpstreamConnection)
    conn.h11.send(h11.Request(method=b"GET", target=b"/", headers=[(b"Host", b"x")]))
    conn.h11.send(h11.EndOfMessage())
    conn.h11.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert isinstance(conn.h11.next_event(), h11.Response)
    assert isinstance(conn.h11.next_event(), h11.EndOfMessage)


class MovingAnswer:
    """A stand-in for the system resolver whose answer for next-hop can be changed."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.asked = 0

    async def __call__(self, host: str, port: int) -> list[SockAddr]:
        await trio.lowlevel.checkpoint()
        self.asked += 1
        return [(socket.AF_INET, self.address)]


async def test_a_connection_whose_address_left_the_answer_is_closed_when_it_comes_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    old, new = ("192.0.2.81", 80), ("192.0.2.82", 80)
    dns = MovingAnswer(old)
    next_hop = Resolver("next-hop", 80, ttl_s=1, lookup=dns)
    async with running_pool(PoolLimits(idle_timeout_s=60), next_hop, old, new) as pool:
        conn, _, _ = await pool.acquire()
        _finish_exchange(conn)
        pool.release(conn)
        dns.address = new  # next-hop moves
        await trio.sleep(2)  # past the answer's TTL
        conn, reused, _ = await pool.acquire()  # busy connections are still reused...
        assert reused and conn.address.startswith(old[0])
        await trio.testing.wait_all_tasks_blocked()  # ...while the answer is refreshed
        _finish_exchange(conn)
        pool.release(conn)  # ...but not kept once their address left the answer
        assert conn.closed and pool.idle_count == 0 and pool.open_count == 0
        conn, reused, _ = await pool.acquire()
        assert not reused and conn.address.startswith(new[0])
        pool.discard(conn)


async def test_a_connection_older_than_its_maximum_age_is_not_reused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limits = PoolLimits(idle_timeout_s=60, max_age_s=10)
    async with running_pool(limits, resolver(ttl_s=3600)) as pool:
        first, _, _ = await pool.acquire()
        _finish_exchange(first)
        pool.release(first)
        await trio.sleep(5)
        again, reused, _ = await pool.acquire()
        assert reused and again is first  # young enough
        _finish_exchange(again)
        pool.release(again)
        await trio.sleep(6)  # 11 s old now
        fresh, reused, _ = await pool.acquire()
        assert not reused and fresh is not first and first.closed
        pool.discard(fresh)


# --- Poisoned connections (from the former e2e/test_hardening.py) -------------------------------


async def test_extra_bytes_from_the_origin_never_reach_another_client(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An origin that sends more than its framing covers poisons its connection: the
    connection is dropped, not pooled, so the next client gets a fresh exchange."""
    connections = 0

    async def oversends(stream: MemoryStream) -> None:
        nonlocal connections
        connections += 1
        while head := await read_head(stream):
            if b"/first" in head:
                await stream.send_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                    b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nX-Injected: yes\r\n\r\nPOISON"
                )
            else:
                await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nclean")

    async with memory_proxy(origin=oversends) as proxy:
        async with proxy.client() as a:
            assert (await a.request(b"GET", b"/first")).body == b"ok"
        async with proxy.client() as b:
            second = await b.request(b"GET", b"/second")
    assert (second.body, second.header(b"x-injected")) == (b"clean", None)
    assert connections == 2


async def test_body_on_a_head_response_is_not_served_to_the_next_request(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def head_with_body(stream: MemoryStream) -> None:
        while head := await read_head(stream):
            body = b"" if head.startswith(b"GET") else b"hello"
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n" + body)
            if not body:
                await stream.send_all(b"world")

    async with memory_proxy(origin=head_with_body) as proxy:
        async with proxy.client() as client:
            await client.request(b"HEAD", b"/")
            reply = await client.request(b"GET", b"/")
    assert reply.status == 200 and reply.body == b"world"


# From the former test_pool_idle.py: The idle limit of pooled upstream connections
# (`upstream.idle_timeout_s`) holds when a connection is taken from the pool, not only when the
# reaper passes.

NODE_KEEPALIVE_TIMEOUT_S = 5.0  # Node's http.Server keepAliveTimeout default


async def test_a_connection_idle_past_the_limit_is_not_reused_though_the_reaper_has_not_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network, origin = MemoryNetwork(), ScriptedOrigin()
    settings = make_settings(upstream__idle_timeout_s=4.0)  # the reaper runs at 2, 4, 6, ...
    async with memory_origin(network, origin), memory_proxy(settings, network) as proxy:
        pool = proxy.server.pool
        await trio.sleep(1.0)
        async with proxy.client() as client:
            assert (await client.request(b"GET", b"/small")).status == 200
            idle_from = trio.current_time()
            await trio.sleep(4.9)  # to 5.9: past the limit, before the reaper's run at 6
            assert pool.idle_count == 1 and pool.stats.expired == 0  # still pooled
            assert (await client.request(b"GET", b"/small")).status == 200
            assert trio.current_time() - idle_from < 6.0 - 1.0  # no reaper run in between
    assert origin.accepted == 2  # a fresh connection, not the one idle 4.9 s
    assert (pool.stats.reused, pool.stats.expired) == (0, 1)


async def test_a_connection_idle_within_the_limit_is_reused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The control: the same run, idle 3.9 s.
    network, origin = MemoryNetwork(), ScriptedOrigin()
    settings = make_settings(upstream__idle_timeout_s=4.0)
    async with memory_origin(network, origin), memory_proxy(settings, network) as proxy:
        await trio.sleep(1.0)
        async with proxy.client() as client:
            assert (await client.request(b"GET", b"/small")).status == 200
            await trio.sleep(3.9)
            assert (await client.request(b"GET", b"/small")).status == 200
    assert origin.accepted == 1
    assert proxy.server.pool.stats.reused == 1


def test_the_idle_timeout_default_stays_below_nodes_keep_alive_timeout() -> None:
    # 4 s: shorter than Node's 5 s keepAliveTimeout, the commonest origin's, so the proxy
    # drops an idle connection before the origin does (nginx's upstream keepalive_timeout is
    # 60 s, which is what gives nginx-fronted Node apps their intermittent 502s).
    assert Settings().upstream.idle_timeout_s == 4.0
    assert PoolLimits().idle_timeout_s == 4.0
    assert Settings().upstream.idle_timeout_s < NODE_KEEPALIVE_TIMEOUT_S
