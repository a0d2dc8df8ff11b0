"""The upstream pool: bounded, consistent after cancellation, never reusing a broken connection.

Modelled on httpcore's tests/test_cancellations.py: cancel in the middle of an exchange, then
assert that the pool holds no connection in a half-finished state.
"""

from __future__ import annotations

import socket

import trio
import trio.testing

from trioproxy.core._errors import PoolTimeout
from trioproxy.engine._h11 import h11  # the proxy's parser: its connections are inspected here
from trioproxy.engine._peer import UpstreamConnection
from trioproxy.engine._pool import PoolLimits, UpstreamPool
from trioproxy.engine._resolver import Resolver

from ..support import Client, make_settings, raw_origin, read_head, running_proxy


async def test_pool_never_opens_more_than_its_size() -> None:
    concurrent = 0
    most = 0
    release = trio.Event()

    async def slow_origin(stream: trio.SocketStream) -> None:
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
    async with raw_origin(slow_origin) as upstream, running_proxy(upstream, settings) as proxy:

        async def one() -> None:
            async with Client.connect(proxy.address) as client:
                statuses.append((await client.request(b"GET", b"/")).status)

        async with trio.open_nursery() as nursery:
            for _ in range(6):
                nursery.start_soon(one)
            while proxy.server.pool.waiting_count < 4:  # four requests queue for a slot
                await trio.testing.wait_all_tasks_blocked()
            assert proxy.server.pool.open_count == 2
            release.set()
    assert statuses == [200] * 6
    assert most == 2


async def test_full_pool_wait_is_bounded_503() -> None:
    async def stuck(stream: trio.SocketStream) -> None:
        await read_head(stream)
        await trio.sleep_forever()

    settings = make_settings(
        upstream__max_connections=1, timeouts__pool_wait_s=0.1, timeouts__upstream_response_s=30
    )
    async with raw_origin(stuck) as upstream, running_proxy(upstream, settings) as proxy:
        async with trio.open_nursery() as nursery:
            first = Client.connect(proxy.address)
            client = await first.__aenter__()
            nursery.start_soon(client.request, b"GET", b"/occupies-the-only-connection")
            while proxy.server.pool.open_count < 1:
                await trio.testing.wait_all_tasks_blocked()
            async with Client.connect(proxy.address) as second:
                reply = await second.request(b"GET", b"/")
            assert reply.status == 503
            nursery.cancel_scope.cancel()
            await first.__aexit__(None, None, None)


async def test_client_gone_mid_upload_leaves_no_broken_connection_in_pool() -> None:
    got_part = trio.Event()

    async def reads_slowly(stream: trio.SocketStream) -> None:
        await read_head(stream)
        got_part.set()
        await trio.sleep_forever()

    async with raw_origin(reads_slowly) as upstream, running_proxy(upstream) as proxy:
        stream = await trio.open_tcp_stream(*proxy.address)
        # More than the read-ahead buffer (64 KiB), so the head goes upstream mid-body.
        await stream.send_all(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + b"p" * 70000
        )
        await got_part.wait()
        assert proxy.server.pool.open_count == 1
        await stream.aclose()  # the client gives up mid-body
        while proxy.server.ctx.stats.connections_open:
            await trio.testing.wait_all_tasks_blocked()
        assert proxy.server.pool.open_count == 0
        assert proxy.server.pool.idle_count == 0
    assert proxy.records[-1].status == 499  # logged as nginx does: client closed request


async def test_client_gone_mid_download_discards_the_upstream_connection() -> None:
    """The proxy learns that the client left when its next write fails; the upstream
    connection is then closed, not pooled, and the origin sees that."""
    origin_saw_close = trio.Event()

    async def trickles(stream: trio.SocketStream) -> None:
        await read_head(stream)
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n")
        try:
            for _ in range(10_000):  # bounded: 10 s at most
                await stream.send_all(b"x" * 1000)
                await trio.sleep(0.001)
        except trio.BrokenResourceError:
            origin_saw_close.set()

    async with raw_origin(trickles) as upstream, running_proxy(upstream) as proxy:
        stream = await trio.open_tcp_stream(*proxy.address)
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert await stream.receive_some(100)
        await stream.aclose()
        await origin_saw_close.wait()
        assert proxy.server.pool.open_count == 0
        assert proxy.server.pool.idle_count == 0
    assert proxy.records[-1].status == 200  # the head had gone out
    assert proxy.records[-1].bytes_sent < 100_000_000


async def test_cancelling_requests_midway_keeps_the_pool_consistent() -> None:
    """Cancel clients at many points of an exchange; afterwards the pool's count of open
    connections equals what it really holds, and a request still succeeds."""

    async def origin(stream: trio.SocketStream) -> None:
        while await read_head(stream):
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
            await trio.sleep(0.001)
            await stream.send_all(b"hello")

    settings = make_settings(upstream__pool_size=4)
    async with raw_origin(origin) as upstream, running_proxy(upstream, settings) as proxy:
        for delay in (0, 0.0002, 0.0005, 0.001, 0.002):
            async with trio.open_nursery() as nursery:
                for _ in range(4):

                    async def one() -> None:
                        async with Client.connect(proxy.address) as client:
                            await client.request(b"GET", b"/")

                    nursery.start_soon(one)
                await trio.sleep(delay)
                nursery.cancel_scope.cancel()
        while proxy.server.ctx.stats.connections_open:
            await trio.testing.wait_all_tasks_blocked()
        pool = proxy.server.pool
        assert pool.open_count == pool.idle_count <= 4
        for conn in pool._idle:  # each idle one is ready for a new exchange
            assert (conn.h11.our_state, conn.h11.their_state) == (h11.IDLE, h11.IDLE)
            assert not conn.has_queued
        async with Client.connect(proxy.address) as client:
            assert (await client.request(b"GET", b"/")).body == b"hello"


async def test_idle_connections_expire(autojump_clock: trio.testing.MockClock) -> None:
    """The reaper closes idle connections after idle_timeout_s, on the (mock) clock."""
    server_side: list[trio.SocketStream] = []

    async def keeps_open(stream: trio.SocketStream) -> None:
        server_side.append(stream)
        await trio.sleep_forever()

    async with raw_origin(keeps_open) as upstream:
        pool = UpstreamPool(Resolver(*upstream, ttl_s=5), PoolLimits(idle_timeout_s=4.0))
        async with trio.open_nursery() as nursery:
            await nursery.start(pool.run)
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
            nursery.cancel_scope.cancel()


async def test_acquire_times_out_when_full(autojump_clock: trio.testing.MockClock) -> None:
    async def keeps_open(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    async with raw_origin(keeps_open) as upstream:
        limits = PoolLimits(max_connections=1, wait_timeout_s=2)
        pool = UpstreamPool(Resolver(*upstream, ttl_s=5), limits)
        async with trio.open_nursery() as nursery:
            await nursery.start(pool.run)
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
            nursery.cancel_scope.cancel()


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

    def __init__(self, port: int) -> None:
        self.port = port
        self.asked = 0

    async def __call__(self, host: str, port: int) -> list[tuple[int, tuple[str, int]]]:
        self.asked += 1
        return [(socket.AF_INET, ("127.0.0.1", self.port))]


async def test_a_connection_whose_address_left_the_answer_is_closed_when_it_comes_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def keeps_open(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    async with raw_origin(keeps_open) as old, raw_origin(keeps_open) as new:
        dns = MovingAnswer(old[1])
        pool = UpstreamPool(
            Resolver("next-hop", 80, ttl_s=1, lookup=dns), PoolLimits(idle_timeout_s=60)
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(pool.run)
            conn, _, _ = await pool.acquire()
            _finish_exchange(conn)
            pool.release(conn)
            dns.port = new[1]  # next-hop moves
            await trio.sleep(2)  # past the answer's TTL
            conn, reused, _ = await pool.acquire()  # busy connections are still reused...
            assert reused and conn.address.endswith(f":{old[1]}")
            await trio.testing.wait_all_tasks_blocked()  # ...while the answer is refreshed
            _finish_exchange(conn)
            pool.release(conn)  # ...but not kept once their address left the answer
            assert conn.closed and pool.idle_count == 0 and pool.open_count == 0
            conn, reused, _ = await pool.acquire()
            assert not reused and conn.address.endswith(f":{new[1]}")
            pool.discard(conn)
            nursery.cancel_scope.cancel()


async def test_a_connection_older_than_its_maximum_age_is_not_reused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def keeps_open(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    async with raw_origin(keeps_open) as upstream:
        limits = PoolLimits(idle_timeout_s=60, max_age_s=10)
        pool = UpstreamPool(Resolver(*upstream, ttl_s=3600), limits)
        async with trio.open_nursery() as nursery:
            await nursery.start(pool.run)
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
            nursery.cancel_scope.cancel()
