"""Hostile input through the real proxy on the memory network: the rows of
``unit/test_strict.py`` end to end (the exact status, the close, nothing reaching the
origin), the limits at their boundaries, and the timeouts (slowloris, stalled body, idle
connection, connection cap) on trio's autojump clock, so no test waits in real time.

(Formerly the socket half of e2e/test_strict.py, on loopback: the autojump clock over real
sockets worked only because loopback is instant.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import h11
import pytest
import trio
import trio.testing

from ..memnet import MemoryProxy, MemoryStream, memory_proxy
from ..support import Reply, make_settings, parse_responses, read_until_closed
from ..unit.test_strict import (
    ACCEPTED_REQUESTS,
    HOST,
    INVALID_CHUNKED,
    LIMITS,
    REJECTED_REQUESTS,
    REJECTED_RESPONSES,
    Row,
    _get,
    _post,
)

CAP_S = 10  # every exchange here finishes well within this (virtual) time


async def test_stray_crlf_before_a_request_is_skipped_but_a_bare_lf_is_not(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seen = CountingOrigin()
    async with memory_proxy(origin=seen) as proxy:
        assert (await _send_raw(proxy, b"\r\n\r\n" + _get(HOST, b"Connection: close")))[0] == 200
        assert (await _send_raw(proxy, b"\n" + _get(HOST, b"Connection: close")))[0] == 400
    assert len(seen.requests) == 1


# End to end: the real proxy, an origin that counts what reaches it.


@dataclass
class CountingOrigin:
    """An h11 origin answering each complete request with 200 "ok", recording everything:
    connections, raw bytes, and complete requests."""

    connections: int = 0
    data: bytearray = field(default_factory=bytearray)
    requests: list[tuple[h11.Request, bytes]] = field(default_factory=list)

    async def __call__(self, stream: MemoryStream) -> None:
        self.connections += 1
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=1 << 20)
        request: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                self.data += data
                conn.receive_data(data)
                if not data:
                    return
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert request is not None
                self.requests.append((request, bytes(body)))
                body.clear()
                out = conn.send(h11.Response(status_code=200, headers=[(b"Content-Length", b"2")]))
                await stream.send_all(out + conn.send(h11.Data(data=b"ok")) + conn.send(event))
                conn.start_next_cycle()
            else:
                return


def _complete_replies(data: bytes) -> list[Reply]:
    """The whole responses at the start of ``data``; stops quietly at an incomplete one. (The
    proxy frames every response to an HTTP/1.1 client by length or chunks, never by the close.)"""
    return parse_responses(data, eof=False)


async def _read_reply(stream: MemoryStream) -> Reply:
    """Read until one whole response has arrived (the connection may stay open)."""
    data = b""
    with trio.fail_after(CAP_S):
        while not (replies := _complete_replies(data)):
            chunk = await stream.receive_some(65536)
            assert chunk, f"closed before a whole response: {data!r}"
            data += chunk
    return replies[0]


async def _send_raw(proxy: MemoryProxy, payload: bytes) -> tuple[int, bytes]:
    """Send ``payload``, read until the proxy closes; (first status or 0, raw reply)."""
    with trio.fail_after(CAP_S):
        data = await proxy.exchange_raw(payload)
    replies = _complete_replies(data)
    return (replies[0].status if replies else 0), data


@pytest.mark.parametrize("row", REJECTED_REQUESTS, ids=lambda row: row.id)
async def test_proxy_rejects_and_nothing_reaches_the_origin(
    autojump_clock: trio.testing.MockClock, row: Row
) -> None:
    seen = CountingOrigin()
    async with memory_proxy(origin=seen) as proxy:
        status, _ = await _send_raw(proxy, row.head + row.body)
        # The server is still there for the next client.
        async with proxy.client() as client:
            assert (await client.request(b"GET", b"/after")).status == 200
    assert status == row.status  # and exchange_raw returned: the proxy closed the connection
    assert [r.target for r, _ in seen.requests] == [b"/after"]
    assert seen.connections == 1
    assert proxy.records[0].status == row.status


@pytest.mark.parametrize("row", ACCEPTED_REQUESTS, ids=lambda row: row.id)
async def test_proxy_forwards_valid_requests(
    autojump_clock: trio.testing.MockClock, row: Row
) -> None:
    seen = CountingOrigin()
    async with memory_proxy(origin=seen) as proxy, proxy.open() as stream:
        await stream.send_all(row.head + row.body)
        reply = await _read_reply(stream)
    assert reply.status == 200
    ((_, body),) = seen.requests
    assert body == (b"abc" if row.body else b"")  # rows with a body carry "abc", chunked or not


@pytest.mark.parametrize(("name", "body"), INVALID_CHUNKED, ids=[v[0] for v in INVALID_CHUNKED])
async def test_proxy_rejects_malformed_chunked_request_bodies(
    autojump_clock: trio.testing.MockClock, name: str, body: bytes
) -> None:
    """The head is fine, so the body's framing error is found while uploading: 400 and close,
    and the origin never sees a complete request."""
    head = _post(b"Transfer-Encoding: chunked")
    seen = CountingOrigin()
    async with memory_proxy(origin=seen) as proxy:
        status, _ = await _send_raw(proxy, head + body)
    assert status == 400
    assert seen.requests == []


@pytest.mark.parametrize("row", REJECTED_RESPONSES, ids=lambda row: row.id)
async def test_malformed_upstream_response_head_is_502(
    autojump_clock: trio.testing.MockClock, row: Row
) -> None:
    async def attacker(stream: MemoryStream) -> None:
        await stream.receive_some(65536)
        await stream.send_all(row.head + b"ok")

    async with memory_proxy(origin=attacker) as proxy:
        with trio.fail_after(CAP_S):
            async with proxy.client() as client:
                reply = await client.request(b"GET", b"/")
    assert reply.status == 502
    assert reply.body == b"502 Bad Gateway\n"


@pytest.mark.parametrize(("name", "body"), INVALID_CHUNKED, ids=[v[0] for v in INVALID_CHUNKED])
async def test_malformed_upstream_chunked_body_never_reaches_the_client_whole(
    autojump_clock: trio.testing.MockClock, name: str, body: bytes
) -> None:
    async def attacker(stream: MemoryStream) -> None:
        await stream.receive_some(65536)
        await stream.send_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
        await trio.sleep_forever()  # keep it open: the proxy has to notice by itself

    async with memory_proxy(origin=attacker) as proxy:
        # (Connection: close: after a 502 the connection would stay open for the next request.)
        status, data = await _send_raw(proxy, _get(HOST, b"Connection: close"))
    # A 502 if nothing had gone out yet; otherwise the connection is aborted mid-response.
    # Either way no complete response reaches the client, and what it got is well-formed.
    assert status in (0, 502), data


# Limits at their boundaries, end to end.


def _head_of_size(size: int) -> bytes:
    base = _get(HOST, b"X-Pad: ")
    return _get(HOST, b"X-Pad: " + b"p" * (size - len(base)))


@pytest.mark.parametrize("pieces", [1, 2])
async def test_total_header_bytes_boundary(
    autojump_clock: trio.testing.MockClock, pieces: int
) -> None:
    """max_header_bytes (default 64 KiB) counts the whole head, final CRLF CRLF included."""
    limit = LIMITS.max_header_bytes
    seen = CountingOrigin()
    async with memory_proxy(origin=seen) as proxy:
        for size, status in ((limit, 200), (limit + 1, 431)):
            head = _head_of_size(size)
            assert len(head) == size
            with trio.fail_after(CAP_S):
                stream = proxy.open()
                async with stream:
                    cut = len(head) // pieces
                    await stream.send_all(head[:cut])
                    await stream.send_all(head[cut:])
                    assert (await _read_reply(stream)).status == status
    assert len(seen.requests) == 1


@pytest.mark.parametrize("pieces", [1, 2])
async def test_response_header_bytes_boundary(
    autojump_clock: trio.testing.MockClock, pieces: int
) -> None:
    """max_header_bytes bounds a response head too, final CRLF CRLF included: a 502 one byte
    beyond, whether the head arrives in one read or in pieces (one reader for both)."""
    limit = 2048
    base = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Pad: \r\n\r\n"

    def head_of_size(size: int) -> bytes:
        return base.replace(b"X-Pad: ", b"X-Pad: " + b"p" * (size - len(base)))

    async def origin(stream: MemoryStream) -> None:
        request = await stream.receive_some(65536)
        head = head_of_size(int(request.split(b"/size/", 1)[1].split(b" ", 1)[0]))
        cut = len(head) // pieces
        await stream.send_all(head[:cut])
        await stream.send_all(head[cut:] + b"ok")

    settings = make_settings(limits__max_header_bytes=limit)
    async with memory_proxy(settings, origin=origin) as proxy:
        for size, status in ((limit, 200), (limit + 1, 502)):
            assert len(head_of_size(size)) == size
            with trio.fail_after(CAP_S):
                async with proxy.client() as client:
                    reply = await client.request(b"GET", b"/size/%d" % size)
            assert reply.status == status


async def test_header_count_boundary(autojump_clock: trio.testing.MockClock) -> None:
    seen = CountingOrigin()
    async with memory_proxy(origin=seen) as proxy:
        fields = [HOST] + [b"X-F%d: v" % i for i in range(LIMITS.max_header_count - 1)]
        assert (await _send_raw(proxy, _get(*fields, b"Connection: close")))[0] == 431
        assert (await _send_raw(proxy, _get(*fields[:-1], b"Connection: close")))[0] == 200
        assert (await _send_raw(proxy, _get(*fields, b"X-Two-More: v")))[0] == 431
    assert len(seen.requests) == 1


@pytest.mark.parametrize("whole", [True, False])
async def test_request_line_boundary(autojump_clock: trio.testing.MockClock, whole: bool) -> None:
    """8 KiB with its CRLF passes; one byte more is 414, also when the line is still arriving
    (the proxy answers as soon as the limit is passed, without waiting for the line's end)."""
    limit = LIMITS.max_request_line_bytes
    seen = CountingOrigin()
    async with memory_proxy(origin=seen) as proxy:
        for length, status in ((limit, 200), (limit + 1, 414)):
            line = b"GET /" + b"r" * (length - len(b"GET / HTTP/1.1\r\n")) + b" HTTP/1.1"
            payload = _get(HOST, b"Connection: close", line=line)
            if not whole and status == 414:
                payload = payload[: limit + 1]  # no LF yet: the line is merely too long so far
            assert (await _send_raw(proxy, payload))[0] == status
    assert len(seen.requests) == 1


# Timeouts and the connection cap, on the autojump clock.


async def until_closed(stream: MemoryStream) -> tuple[bytes, float]:
    """What the proxy sends until it closes, and how long (virtual) that took."""
    started = trio.current_time()
    with trio.fail_after(CAP_S):
        data = await read_until_closed(stream)
    return data, trio.current_time() - started


async def test_slowloris_gets_408_at_the_header_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """One byte per 100 ms never completes a head: client_header_s bounds the whole head.
    (The deadline falls between two bytes, so every byte sent was read before the close.)"""
    settings = make_settings(timeouts__client_header_s=3.05)
    seen = CountingOrigin()
    async with memory_proxy(settings, origin=seen) as proxy:
        stream = proxy.open()
        async with stream, trio.open_nursery() as nursery:

            async def drip() -> None:
                for byte in _get(HOST, *[b"X-Slow-%d: zzz" % i for i in range(200)]):
                    await stream.send_all(bytes([byte]))
                    await trio.sleep(0.1)

            nursery.start_soon(drip)
            reply, elapsed = await until_closed(stream)
            nursery.cancel_scope.cancel()
    assert _complete_replies(reply)[0].status == 408
    assert 3.05 <= elapsed < 3.15  # at the deadline, and the connection was closed
    assert seen.connections == 0
    assert proxy.records[0].status == 408


async def test_silent_connection_is_closed_at_the_header_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    settings = make_settings(timeouts__client_header_s=2.0)
    async with memory_proxy(settings, origin=CountingOrigin()) as proxy, proxy.open() as stream:
        reply, elapsed = await until_closed(stream)
    assert reply == b""  # closed without a word
    assert elapsed == pytest.approx(2.0, abs=0.01)


async def test_stalled_body_gets_408_after_body_inactivity(
    autojump_clock: trio.testing.MockClock,
) -> None:
    settings = make_settings(timeouts__client_body_s=1.5)
    seen = CountingOrigin()
    async with memory_proxy(settings, origin=seen) as proxy, proxy.open() as stream:
        await stream.send_all(_post(b"Content-Length: 10") + b"abc")
        reply, elapsed = await until_closed(stream)
        assert elapsed == pytest.approx(1.5, abs=0.01)
    assert _complete_replies(reply)[0].status == 408
    assert seen.requests == []  # the origin never saw a complete request


async def test_connections_beyond_the_cap_wait_in_the_backlog(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """limits.max_connections: the accept loop stops; the kernel's backlog holds the rest."""
    settings = make_settings(limits__max_connections=2)
    seen = CountingOrigin()
    async with memory_proxy(settings, origin=seen) as proxy:
        stats = proxy.server.ctx.stats
        first = proxy.open()
        second = proxy.open()
        await first.send_all(b"GET / HTT")  # both hold a slot with a head in progress
        await second.send_all(b"GET / HTT")
        third = proxy.open()  # connects: the backlog
        async with first, second, third:
            await third.send_all(_get(HOST))
            with trio.move_on_after(1.0):  # < client_header_s: the two slots stay taken
                await third.receive_some(65536)
                raise AssertionError("a third connection was served beyond the cap")
            assert (stats.connections_open, len(seen.requests)) == (2, 0)
            await first.aclose()  # frees a slot: the third is accepted and served
            reply = await _read_reply(third)
    assert reply.status == 200
    assert stats.connections_total == 3


async def test_origin_closing_mid_head_is_a_prompt_502(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An origin that hangs up in the middle of a response head: a 502 at once, not a wait
    for upstream_response_s (found by fuzz/ property (d); fixed in the engine since)."""

    async def hangs_up_mid_head(stream: MemoryStream) -> None:
        await stream.receive_some(65536)
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Le")

    settings = make_settings(timeouts__upstream_response_s=1.0)
    async with memory_proxy(settings, origin=hangs_up_mid_head) as proxy:
        async with proxy.client() as client:
            with trio.fail_after(0.5):  # half the response deadline: EOF is news at once
                reply = await client.request(b"GET", b"/")
    assert reply.status == 502


async def test_trailer_named_in_connection_does_not_cross(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def origin(stream: MemoryStream) -> None:
        await stream.receive_some(65536)
        await stream.send_all(
            b"HTTP/1.1 200 OK\r\nConnection: X-Hop\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2\r\nok\r\n0\r\nX-Hop: secret\r\nX-End: 1\r\n\r\n"
        )

    async with memory_proxy(origin=origin) as proxy:
        with trio.fail_after(CAP_S):
            stream = proxy.open()
            async with stream:
                await stream.send_all(_get(HOST))
                data = b""
                while not (b"\r\n0\r\n" in data and data.endswith(b"\r\n\r\n")):
                    data += await stream.receive_some(65536)
    assert b"X-End: 1" in data
    assert b"X-Hop" not in data
