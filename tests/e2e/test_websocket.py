"""WebSocket tunnelling with trio-websocket at both ends, and the upgrade edge cases."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import pytest
import trio
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    WebSocketRequest,
    open_websocket_url,
    serve_websocket,
)

from ..support import (
    answering_every,
    exchange_raw,
    fields,
    make_settings,
    raw_origin,
    running_proxy,
)

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


async def _echo_handler(request: WebSocketRequest) -> None:
    ws = await request.accept()
    try:
        while True:
            message = await ws.get_message()
            if message == "close-with-4001":
                await ws.aclose(code=4001, reason="asked to")
                return
            await ws.send_message(message)
    except ConnectionClosed:
        pass


@asynccontextmanager
async def ws_origin() -> AsyncIterator[tuple[str, int]]:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            partial(serve_websocket, _echo_handler, "127.0.0.1", 0, None, max_message_size=1 << 22)
        )
        try:
            yield ("127.0.0.1", server.port)
        finally:
            nursery.cancel_scope.cancel()


async def test_websocket_round_trip_through_the_proxy() -> None:
    settings = make_settings(timeouts__tunnel_fin_s=0.5)
    async with ws_origin() as origin, running_proxy(origin, settings) as proxy:
        url = f"ws://127.0.0.1:{proxy.port}/chat"
        async with open_websocket_url(url, max_message_size=1 << 22) as ws:
            await ws.send_message("hello")
            assert await ws.get_message() == "hello"
            await ws.send_message(b"\x00\x01binary\xff")
            assert await ws.get_message() == b"\x00\x01binary\xff"
            big = bytes(range(256)) * 8192  # 2 MiB: many TCP segments, one frame
            await ws.send_message(big)
            assert await ws.get_message() == big
            await ws.ping(b"are you there")  # returns once the matching pong arrived
            await ws.send_message("close-with-4001")
            with pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()
            assert closed.value.reason is not None
            assert closed.value.reason.code == 4001
            await _close_socket_of(ws)
        while proxy.server.ctx.stats.connections_open:
            await trio.testing.wait_all_tasks_blocked()
    assert proxy.server.pool.open_count == 0  # a tunnel's connection never goes back
    (record,) = proxy.records
    assert record.status == 101
    assert record.bytes_sent > len(big)  # bytes each way, for the one line per tunnel
    assert record.bytes_received > len(big)


async def _close_socket_of(ws: WebSocketConnection) -> None:
    """trio-websocket 0.12's client leaves its socket open when the peer hangs up without a
    close frame (it records code 1006 and returns); close it so the test leaks nothing."""
    await ws._stream.aclose()


def _accept_key(request_head: bytes) -> bytes:
    for line in request_head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-key":
            digest = hashlib.sha1(value.strip() + WS_GUID).digest()  # RFC 6455 4.2.2 mandates SHA-1
            return base64.b64encode(digest)
    raise AssertionError("no Sec-WebSocket-Key")


async def test_bytes_sent_in_the_same_packet_as_the_101_arrive() -> None:
    """h11 buffers bytes past the protocol switch (trailing_data); they must be spliced."""
    seen_request: list[bytes] = []

    async def eager_server(stream: trio.SocketStream) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            head += await stream.receive_some(65536)
        seen_request.append(head)
        await stream.send_all(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + _accept_key(head) + b"\r\n\r\n"
            b"\x81\x05early"  # an unmasked text frame, in the same send as the 101
        )
        await stream.receive_some(65536)  # the client's close frame: hang up in answer

    async with raw_origin(eager_server) as origin, running_proxy(origin) as proxy:
        async with open_websocket_url(f"ws://127.0.0.1:{proxy.port}/") as ws:
            assert await ws.get_message() == "early"
            await ws.aclose()
            await _close_socket_of(ws)
    forwarded = seen_request[0].lower()
    assert b"connection: upgrade" in forwarded and b"upgrade: websocket" in forwarded


async def test_client_bytes_right_after_the_request_are_spliced_too() -> None:
    async def echo_raw_after_101(stream: trio.SocketStream) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            head += await stream.receive_some(65536)
        _, _, rest = head.partition(b"\r\n\r\n")
        await stream.send_all(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
            + rest
        )
        while data := await stream.receive_some(65536):
            await stream.send_all(data)

    request = (
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    async with raw_origin(echo_raw_after_101) as origin, running_proxy(origin) as proxy:
        stream = await trio.open_tcp_stream(*proxy.address)
        async with stream:
            await stream.send_all(request + b"RAW-BYTES-IN-SAME-PACKET")
            received = b""
            while b"RAW-BYTES-IN-SAME-PACKET" not in received:
                received += await stream.receive_some(65536)
            assert received.startswith(b"HTTP/1.1 101 ")
            # Half-close: our EOF reaches the origin, which ends its echo and closes back.
            await stream.send_eof()
            while await stream.receive_some(65536):
                pass


async def test_refused_upgrade_is_an_ordinary_response_and_keeps_alive() -> None:
    refuses = answering_every(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno")
    headers = [(b"Connection", b"Upgrade"), (b"Upgrade", b"websocket")]
    async with raw_origin(refuses) as origin, running_proxy(origin) as proxy:
        async with proxy.client() as client:
            first = await client.request(b"GET", b"/", headers)
            second = await client.request(b"GET", b"/", headers)
    assert (first.status, first.body, second.status) == (403, b"no", 403)
    assert proxy.server.pool.stats.opened == 1  # the refused upgrade left it reusable


async def test_h2c_upgrade_is_stripped_and_forwarded_as_http11(origin: tuple[str, int]) -> None:
    h2c = fields("""
        Connection: Upgrade, HTTP2-Settings
        Upgrade: h2c
        HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA
    """)
    async with running_proxy(origin) as proxy, proxy.client() as client:
        reply = await client.request(b"GET", b"/", h2c)
    names = {name for name, _ in reply.json()["headers"]}
    assert reply.status == 200
    assert names.isdisjoint({"upgrade", "connection", "http2-settings"})


async def test_connect_is_405(origin: tuple[str, int]) -> None:
    async with running_proxy(origin) as proxy:
        data = await exchange_raw(
            proxy.address, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
        )
    assert data.startswith(b"HTTP/1.1 405 ")


async def test_idle_tunnel_is_closed() -> None:
    async with ws_origin() as origin:
        settings = make_settings(timeouts__tunnel_idle_s=1.0)
        async with running_proxy(origin, settings) as proxy:
            async with open_websocket_url(f"ws://127.0.0.1:{proxy.port}/") as ws:
                await ws.send_message("still here")
                assert await ws.get_message() == "still here"
                with trio.fail_after(5), pytest.raises(ConnectionClosed):
                    await ws.get_message()  # nothing moves for 1 s: the proxy hangs up
                await _close_socket_of(ws)
