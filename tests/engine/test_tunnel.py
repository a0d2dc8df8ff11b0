"""Tunnels after a 101 without sockets, on the autojump clock: raw bytes spliced both ways,
half-closes passed on, tunnel_fin_s and tunnel_idle_s, and tunnels outside the pool's cap."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio
import trio.testing

from trioproxy.engine._memory import MemoryNetwork

from ..memnet import (
    MemoryProxy,
    MemoryStream,
    ScriptedOrigin,
    memory_proxy,
    wait_until,
)
from ..support import make_settings, read_head

UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
)
SWITCH = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"

Behaviour = Callable[[MemoryStream], Awaitable[None]]


def upgrading(behaviour: Behaviour, *, with_switch: bytes = b"") -> Behaviour:
    """An origin that accepts the upgrade (sending ``with_switch`` in the same write as the
    101), then does ``behaviour`` on the raw connection."""

    async def handler(stream: MemoryStream) -> None:
        head = await read_head(stream)
        assert head.startswith(b"GET /ws ")
        await stream.send_all(SWITCH + with_switch)
        await behaviour(stream)

    return handler


async def echo_upper(stream: MemoryStream) -> None:
    while data := await stream.receive_some(65536):
        await stream.send_all(data.upper())


async def switched(proxy: MemoryProxy, early: bytes = b"") -> tuple[MemoryStream, bytes]:
    """A client connection through the upgrade: the stream, and the bytes after the 101."""
    stream = proxy.open()
    await stream.send_all(UPGRADE + early)
    received = b""
    with trio.fail_after(5):
        while b"\r\n\r\n" not in received:
            received += await stream.receive_some(65536)
    head, rest = received.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 101 ")
    return stream, rest


async def receive_exactly(stream: MemoryStream, size: int) -> bytes:
    received = bytearray()
    while len(received) < size:
        chunk = await stream.receive_some(65536)
        assert chunk, "closed early"
        received += chunk
    return bytes(received)


async def test_a_tunnel_splices_bytes_both_ways_under_backpressure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork(capacity=4096)
    payload = bytes(range(97, 123)) * 40_000  # ~1 MB, many times the pipes' capacity
    async with memory_proxy(network=network, origin=upgrading(echo_upper)) as p:
        stream, rest = await switched(p)
        assert rest == b""
        async with stream, trio.open_nursery() as nursery:
            nursery.start_soon(stream.send_all, payload)
            with trio.fail_after(5):
                assert await receive_exactly(stream, len(payload)) == payload.upper()
        assert p.server.ctx.stats.tunnels_open == 1
        assert p.server.pool.open_count == 0  # a tunnel is detached from the pool's count
        await p.logged()
        assert p.upstream_open == 0 and p.server.ctx.stats.tunnels_open == 0
    assert [r.status for r in p.records] == [101]


async def test_bytes_sent_with_the_101_and_right_after_the_request_are_spliced(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seen: list[bytes] = []

    async def record_first(stream: MemoryStream) -> None:
        seen.append(await stream.receive_some(65536))
        await trio.sleep_forever()

    handler = upgrading(record_first, with_switch=b"from-origin")
    async with memory_proxy(origin=handler) as proxy:
        stream, rest = await switched(proxy, early=b"from-client")
        async with stream:
            rest += await receive_exactly(stream, len(b"from-origin") - len(rest))
            await wait_until(lambda: seen)
    assert rest == b"from-origin"
    assert seen == [b"from-client"]


async def test_a_half_close_is_passed_on_and_the_other_way_stays_open(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def answers_after_eof(stream: MemoryStream) -> None:
        got = b""
        while data := await stream.receive_some(65536):
            got += data
        await stream.send_all(b"got %d bytes" % len(got))  # after the client's EOF

    handler = upgrading(answers_after_eof)
    async with memory_proxy(origin=handler) as proxy:
        stream, _ = await switched(proxy)
        async with stream:
            await stream.send_all(b"12345")
            await stream.send_eof()
            with trio.fail_after(5):
                received = b""
                while data := await stream.receive_some(65536):
                    received += data
    assert received == b"got 5 bytes"


async def test_after_one_side_s_eof_the_tunnel_lasts_tunnel_fin_s(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def never_closes(stream: MemoryStream) -> None:
        while await stream.receive_some(65536):
            pass
        await trio.sleep_forever()

    settings = make_settings(timeouts__tunnel_fin_s=10.0, timeouts__tunnel_idle_s=3600.0)
    handler = upgrading(never_closes)
    async with memory_proxy(settings, origin=handler) as proxy:
        stream, _ = await switched(proxy)
        async with stream:
            await stream.send_eof()
            closed_half = trio.current_time()
            with trio.fail_after(60):
                assert await stream.receive_some(65536) == b""
            assert 10.0 <= trio.current_time() - closed_half < 11.0
        await proxy.logged()
        assert proxy.upstream_open == 0


async def test_an_idle_tunnel_is_closed_after_tunnel_idle_s(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def talks_once(stream: MemoryStream) -> None:
        await stream.send_all(b"hi")
        await trio.sleep_forever()

    settings = make_settings(timeouts__tunnel_idle_s=600.0)
    async with memory_proxy(settings, origin=upgrading(talks_once)) as p:
        stream, rest = await switched(p)
        async with stream:
            rest += await receive_exactly(stream, 2 - len(rest))
            last_byte = trio.current_time()
            with trio.fail_after(700):
                assert await stream.receive_some(65536) == b""
            assert 600.0 <= trio.current_time() - last_byte < 601.0
        await p.logged()
        assert p.upstream_open == 0 and p.server.ctx.stats.tunnels_open == 0
    assert rest == b"hi"
    assert p.records[0].status == 101


async def test_open_tunnels_do_not_use_up_upstream_max_connections(
    autojump_clock: trio.testing.MockClock,
) -> None:
    origin = ScriptedOrigin()

    async def both(stream: MemoryStream) -> None:
        # The first connection becomes the tunnel; the others are ordinary ones.
        if not tunnels:
            tunnels.append(stream)
            await upgrading(echo_upper)(stream)
        else:
            await origin(stream)

    tunnels: list[MemoryStream] = []
    settings = make_settings(upstream__max_connections=1, timeouts__pool_wait_s=5.0)
    async with memory_proxy(settings, origin=both) as proxy:
        stream, _ = await switched(proxy)
        async with stream:
            async with proxy.client() as client:
                with trio.fail_after(1):
                    assert (await client.request(b"GET", b"/small")).status == 200
            await stream.send_all(b"still here")
            assert await receive_exactly(stream, 10) == b"STILL HERE"
