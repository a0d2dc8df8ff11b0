"""An origin's chunked response found malformed at its end (a ``Content-Length`` in the
trailer section, which RFC 9110 6.5.1 forbids and llhttp rejects).

Fully buffered, none of it has reached the client when the trailer is judged: the client
gets a 502 instead of nothing, and the connection stays usable (the request was read
whole). Streamed, its head and body have left: the connection is cut, the client knows the
body is incomplete (no last chunk), and the access log says the status that was sent. Either
way, the access log agrees with what the client got.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio
import trio.testing

from ..memnet import (
    MemoryStream,
    ScriptedOrigin,
    memory_proxy,
    sent_by_hand,
)
from ..support import read_head

BAD_TRAILER = b"0\r\nContent-Length: 5\r\n\r\n"


def origin_with_bad_trailer(
    body_size: int, before: bytes = b""
) -> Callable[[MemoryStream], Awaitable[None]]:
    """Its first connection answers with the bad trailer; later ones answer "ok"."""
    connections = 0

    async def handler(stream: MemoryStream) -> None:
        nonlocal connections
        connections += 1
        if connections > 1:
            await ScriptedOrigin()(stream)
            return
        await read_head(stream)
        head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        chunk = b"%x\r\n%s\r\n" % (body_size, b"b" * body_size)
        await stream.send_all(before + head + chunk + BAD_TRAILER)
        await read_head(stream)

    return handler


async def test_a_buffered_response_with_a_bad_trailer_is_answered_with_a_502(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with memory_proxy(origin=origin_with_bad_trailer(100)) as proxy:
        async with proxy.client() as client:
            with trio.fail_after(10):
                reply = await client.request(b"GET", b"/")
            assert reply.status == 502 and reply.header(b"connection") is None
            assert reply.body == b"502 Bad Gateway\n"
            await proxy.logged(1)
            # The connection goes on: the request had been read whole.
            assert (await client.request(b"GET", b"/small")).status == 200
    (record, _) = proxy.records
    assert record.status == 502 and record.upstream_status == 200
    assert record.body_bytes_sent == len(b"502 Bad Gateway\n")


async def test_a_streamed_response_with_a_bad_trailer_is_cut_and_logged_as_sent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    size = 300_000  # past limits.response_buffer_bytes: its head leaves before its end
    async with memory_proxy(origin=origin_with_bad_trailer(size)) as proxy:
        with trio.fail_after(10):
            received = await proxy.exchange_raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await proxy.logged(1)
    assert received.startswith(b"HTTP/1.1 200 ")
    assert not received.endswith(b"0\r\n\r\n")  # cut: the client can tell
    (record,) = proxy.records
    assert record.status == 200  # what the client got
    assert 0 < record.body_bytes_sent <= size


async def test_a_request_pipelined_behind_it_is_answered_after_the_502(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with memory_proxy(origin=origin_with_bad_trailer(100)) as proxy:
        async with proxy.client() as client:
            get = b"GET /%s HTTP/1.1\r\nHost: x\r\n\r\n"
            await client.stream.send_all(get % b"bad" + get % b"small")
            sent_by_hand(client, b"GET", b"/bad")
            with trio.fail_after(10):
                first = await client.read_reply()
                sent_by_hand(client, b"GET", b"/small")
                second = await client.read_reply()
    assert (first.status, second.status, second.body) == (502, 200, b"ok")
    assert [r.status for r in proxy.records] == [502, 200]


async def test_after_a_relayed_1xx_the_bad_response_still_becomes_a_502(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A 103 has left, but it is no part of the final response (RFC 9110 15.2): the 502
    # follows it, and the connection goes on.
    early = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
    async with memory_proxy(origin=origin_with_bad_trailer(100, before=early)) as proxy:
        async with proxy.client() as client:
            with trio.fail_after(10):
                reply = await client.request(b"GET", b"/")
                assert [info.status_code for info in reply.informational] == [103]
                assert (reply.status, reply.body) == (502, b"502 Bad Gateway\n")
                assert (await client.request(b"GET", b"/small")).status == 200
            await proxy.logged(2)
    record = proxy.records[0]
    assert record.status == 502 and record.body_bytes_sent == len(b"502 Bad Gateway\n")


async def test_a_client_that_asked_to_close_gets_the_502_and_the_close(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with memory_proxy(origin=origin_with_bad_trailer(100)) as proxy:
        with trio.fail_after(10):  # the client idle timeout is 75 s
            received = await proxy.exchange_raw(
                b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
    assert received.startswith(b"HTTP/1.1 502 "), bytes(received)
    assert b"\r\nconnection: close\r\n" in received.lower()
