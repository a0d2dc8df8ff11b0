"""Expect: 100-continue (RFC 9110 10.1.1): relayed both ways, early answers honoured."""

from __future__ import annotations

import h11
import pytest
import trio

from trioproxy.config._settings import Settings

from ..support import answering, exchange_raw, make_settings, raw_origin, running_proxy

HEAD = b"PUT /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n"
# A request buffer smaller than the 11-byte body: the expectation goes to the origin, which
# may answer early. Bodies that fit the buffer are taken by the proxy itself (nginx's way).
LARGER_THAN_THE_BUFFER = make_settings(limits__request_buffer_bytes=8)


async def _read_head(stream: trio.SocketStream, buffer: bytearray) -> bytes:
    while b"\r\n\r\n" not in buffer:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise AssertionError("closed before a head")
        buffer += chunk
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    buffer[:] = rest
    return head


async def _continuing_origin(stream: trio.SocketStream) -> None:
    """Sends 100 Continue when asked, reads the body, answers with what it got."""
    buffer = bytearray()
    head = await _read_head(stream, buffer)
    if b"expect: 100-continue" in head.lower():
        await stream.send_all(b"HTTP/1.1 100 Continue\r\n\r\n")
    while len(buffer) < 11:
        buffer += await stream.receive_some(65536)
    await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n" + bytes(buffer[:11]))


async def _client(address: tuple[str, int]) -> tuple[trio.SocketStream, h11.Connection]:
    """A connection and an h11 client that has sent HEAD (the bytes go out separately,
    so a test decides when, and whether with the body)."""
    stream = await trio.open_tcp_stream(*address)
    conn = h11.Connection(h11.CLIENT)
    conn.send(
        h11.Request(
            method=b"PUT",
            target=b"/",
            headers=[(b"Host", b"x"), (b"Content-Length", b"11"), (b"Expect", b"100-continue")],
        )
    )
    return stream, conn


async def _next_response_event(stream: trio.SocketStream, conn: h11.Connection) -> object:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        conn.receive_data(await stream.receive_some(65536))


async def _send_head_and_get_100(stream: trio.SocketStream, conn: h11.Connection) -> None:
    """Send HEAD without the body, as a client that waits; the next event must be the 100."""
    await stream.send_all(HEAD)
    informational = await _next_response_event(stream, conn)
    assert isinstance(informational, h11.InformationalResponse)
    assert informational.status_code == 100


async def test_a_body_that_fits_the_buffer_is_taken_before_the_origin_hears_of_it() -> None:
    """No upstream connection waits for a client that may never send its body: the proxy
    answers 100 itself, and the origin gets the request whole, without the expectation."""
    heads: list[bytes] = []

    async def origin_handler(stream: trio.SocketStream) -> None:
        buffer = bytearray()
        heads.append(await _read_head(stream, buffer))
        while len(buffer) < 11:
            buffer += await stream.receive_some(65536)
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n" + bytes(buffer))

    async with raw_origin(origin_handler) as origin, running_proxy(origin) as proxy:
        stream, conn = await _client(proxy.address)
        async with stream:
            await _send_head_and_get_100(stream, conn)
            assert not heads  # nothing went upstream yet
            assert proxy.server.pool.open_count == 0
            await stream.send_all(b"hello world")
            final = await _next_response_event(stream, conn)
            assert isinstance(final, h11.Response) and final.status_code == 200
    assert len(heads) == 1 and b"expect" not in heads[0].lower()


@pytest.mark.parametrize(
    "settings",
    [None, LARGER_THAN_THE_BUFFER],
    ids=["the proxy answers 100", "the origin's 100 is relayed"],
)
async def test_client_waits_for_100_then_sends_body(settings: Settings | None) -> None:
    async with raw_origin(_continuing_origin) as origin, running_proxy(origin, settings) as proxy:
        stream, conn = await _client(proxy.address)
        async with stream:
            await _send_head_and_get_100(stream, conn)
            await stream.send_all(b"hello world")
            final = await _next_response_event(stream, conn)
            assert isinstance(final, h11.Response) and final.status_code == 200
            body = await _next_response_event(stream, conn)
            assert isinstance(body, h11.Data) and body.data == b"hello world"


async def test_client_that_does_not_wait_works_too() -> None:
    async with raw_origin(_continuing_origin) as origin, running_proxy(origin) as proxy:
        stream, conn = await _client(proxy.address)
        async with stream:
            await stream.send_all(HEAD + b"hello world")
            events = [await _next_response_event(stream, conn) for _ in range(3)]
    assert [type(e).__name__ for e in events] == ["InformationalResponse", "Response", "Data"]
    assert isinstance(events[2], h11.Data) and events[2].data == b"hello world"


async def test_early_final_answer_is_relayed_and_the_body_never_read() -> None:
    body_reached_origin = False

    async def rejects(stream: trio.SocketStream) -> None:
        nonlocal body_reached_origin
        buffer = bytearray()
        await _read_head(stream, buffer)
        await stream.send_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 6\r\n\r\nlog in")
        with trio.move_on_after(0.5):
            body_reached_origin = bool(buffer or await stream.receive_some(65536))

    async with (
        raw_origin(rejects) as origin,
        running_proxy(origin, LARGER_THAN_THE_BUFFER) as proxy,
    ):
        received = await exchange_raw(proxy.address, HEAD)  # until the proxy closes
    assert received.startswith(b"HTTP/1.1 401 Unauthorized")
    assert received.endswith(b"log in")
    assert b"100 Continue" not in received
    assert not body_reached_origin


async def test_417_from_origin_is_relayed() -> None:
    refuses_expectation = answering(
        b"HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n\r\n", hold=True
    )
    async with (
        raw_origin(refuses_expectation) as origin,
        running_proxy(origin, LARGER_THAN_THE_BUFFER) as proxy,
    ):
        received = await exchange_raw(proxy.address, HEAD)  # until the proxy closes
    assert received.startswith(b"HTTP/1.1 417 ")
    assert proxy.records[-1].status == 417
