"""README promises that mutation testing showed no test pinned down: each test here fails
when the promise is broken (a mutant of the code that keeps every other test green)."""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable

import pytest
import trio
import trio.testing

from ..support import Client, make_settings, raw_origin, read_head, running_proxy


def _response(body: bytes = b"ok") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def _reset(stream: trio.SocketStream) -> None:
    """Close with a reset (RST), not a FIN."""
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    stream.socket.close()


def _close(stream: trio.SocketStream) -> None:
    """Close with a FIN."""
    stream.socket.close()


async def test_a_bodyless_post_is_never_retried_on_a_stale_connection() -> None:
    """`POST /logout` with no body: not idempotent, so a reused connection that dies before
    any response byte is a 502, never a second POST (the retry rule: idempotent AND no body)."""
    seen: list[bytes] = []

    async def stale_after_first(stream: trio.SocketStream) -> None:
        seen.append(await read_head(stream))
        await stream.send_all(_response())
        seen.append(await read_head(stream))  # the POST arrives, then the origin hangs up

    async with raw_origin(stale_after_first) as upstream, running_proxy(upstream) as proxy:
        async with Client.connect(proxy.address) as client:
            assert (await client.request(b"GET", b"/")).status == 200
            reply = await client.request(b"POST", b"/logout")
    assert reply.status == 502
    assert [head.split(b" ", 1)[0] for head in seen] == [b"GET", b"POST"]  # one POST only
    assert proxy.server.ctx.stats.retries == 0


@pytest.mark.parametrize("hang_up", [_reset, _close], ids=["reset", "fin"])
async def test_no_retry_once_the_origin_sent_part_of_a_response(
    hang_up: Callable[[trio.SocketStream], None],
) -> None:
    """A GET on a reused connection whose origin sends part of a response head, then resets
    or closes: bytes came back, so the request may have been acted on; 502, no retry."""
    connections: list[int] = []

    async def partial_then_reset(stream: trio.SocketStream) -> None:
        connections.append(1)
        await read_head(stream)
        await stream.send_all(_response())
        await read_head(stream)
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Le")
        hang_up(stream)

    async with raw_origin(partial_then_reset) as upstream, running_proxy(upstream) as proxy:
        async with Client.connect(proxy.address) as client:
            assert (await client.request(b"GET", b"/")).status == 200
            reply = await client.request(b"GET", b"/")
    assert reply.status == 502
    assert len(connections) == 1
    assert proxy.server.ctx.stats.retries == 0


async def test_draining_closes_after_the_answer_even_with_a_pipelined_request_buffered() -> None:
    """During a drain a connection ends after its in-flight exchange, with Connection: close,
    even when the client's next (pipelined) request is already in the proxy's buffer."""
    arrived = trio.Event()
    answer = trio.Event()
    requests: list[bytes] = []

    async def held(stream: trio.SocketStream) -> None:
        while head := await read_head(stream):
            requests.append(head)
            arrived.set()
            await answer.wait()
            await stream.send_all(_response())

    pipelined = b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n"
    async with raw_origin(held) as upstream, running_proxy(upstream) as proxy:
        stream = await trio.open_tcp_stream(*proxy.address)
        async with stream:
            await stream.send_all(pipelined)  # both requests in one packet: /2 is buffered
            with trio.fail_after(10):
                await arrived.wait()
                proxy.server.shutdown()
                await trio.testing.wait_all_tasks_blocked()  # the drain has begun
                assert proxy.server.ctx.draining
                answer.set()
                received = b""
                while chunk := await stream.receive_some(65536):
                    received += chunk
    assert received.startswith(b"HTTP/1.1 200 ")
    assert received.count(b"HTTP/1.1 ") == 1  # /2 was not served
    assert b"\r\nConnection: close\r\n" in received
    assert len(requests) == 1


async def test_upstream_max_connections_bounds_every_connection() -> None:
    """upstream.max_connections bounds connections, busy ones included: with 2 slots and 5
    concurrent requests, two connections open and three requests wait for them."""
    connections: list[int] = []
    both_busy = trio.Event()
    release = trio.Event()

    async def slow(stream: trio.SocketStream) -> None:
        connections.append(1)
        while await read_head(stream):
            if len(connections) == 2:
                both_busy.set()
            await release.wait()
            await stream.send_all(_response())

    statuses: list[int] = []
    settings = make_settings(upstream__max_connections=2)
    async with raw_origin(slow) as upstream, running_proxy(upstream, settings) as proxy:

        async def one_request() -> None:
            async with Client.connect(proxy.address) as client:
                statuses.append((await client.request(b"GET", b"/")).status)

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                for _ in range(5):
                    nursery.start_soon(one_request)
                await both_busy.wait()
                await trio.testing.wait_all_tasks_blocked()  # the rest reach the pool's wait
                assert len(connections) == 2
                assert proxy.server.pool.open_count == 2
                assert proxy.server.pool.waiting_count == 3
                release.set()
    assert statuses == [200] * 5
    assert len(connections) == 2


async def test_pool_size_bounds_the_idle_connections_kept() -> None:
    """upstream.pool_size is nginx's `keepalive N`: five concurrent requests get five
    connections; afterwards two stay idle for reuse and the rest are closed."""
    connections: list[int] = []
    all_busy = trio.Event()
    release = trio.Event()

    async def slow(stream: trio.SocketStream) -> None:
        connections.append(1)
        while await read_head(stream):
            if len(connections) == 5:
                all_busy.set()
            await release.wait()
            await stream.send_all(_response())

    settings = make_settings(upstream__pool_size=2)
    async with raw_origin(slow) as upstream, running_proxy(upstream, settings) as proxy:

        async def one_request() -> None:
            async with Client.connect(proxy.address) as client:
                assert (await client.request(b"GET", b"/")).status == 200

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                for _ in range(5):
                    nursery.start_soon(one_request)
                await all_busy.wait()
                assert proxy.server.pool.open_count == 5
                release.set()
        assert proxy.server.pool.idle_count == 2
        assert proxy.server.pool.open_count == 2


async def test_a_connection_with_bytes_past_the_response_is_not_pooled() -> None:
    """Bytes after a complete response (here in the same packet, so already in h11's buffer
    where no poll can see them) would answer the next request: the connection is dropped."""
    connections: list[int] = []

    async def trailing_junk(stream: trio.SocketStream) -> None:
        connections.append(1)
        while await read_head(stream):
            await stream.send_all(_response() + b"HTTP/1.1 200 OK\r\n")

    async with raw_origin(trailing_junk) as upstream, running_proxy(upstream) as proxy:
        async with Client.connect(proxy.address) as client:
            assert (await client.request(b"GET", b"/")).body == b"ok"
            assert proxy.server.pool.idle_count == 0
            assert proxy.server.pool.open_count == 0
            assert (await client.request(b"GET", b"/")).body == b"ok"
    assert len(connections) == 2
