"""The request body limit on the memory network (autojump clock): a declared Content-Length
over it gets a 413 before anything goes upstream (and no 100 Continue); a chunked body that
passes it is stopped, with a 413 while no response head went out, else by cutting both
connections; a rule's limit wins over the global one."""

from __future__ import annotations

import h11
import trio
import trio.testing

from trioproxy.config._config import settings_from_bytes

from ..memnet import (
    MemoryStream,
    memory_proxy,
    scripted_proxy,
)
from ..support import make_settings, parse_responses, read_head, read_until_closed

LIMITED = make_settings(limits__max_request_body_bytes=1000)
# Larger bodies than the request buffer: the origin has the head and the first bytes when
# the limit is passed.
STREAMED = make_settings(limits__max_request_body_bytes=10_000, limits__request_buffer_bytes=1024)


def post_head(*fields: bytes, target: bytes = b"/upload") -> bytes:
    return b"\r\n".join([b"POST " + target + b" HTTP/1.1", b"Host: x", *fields]) + b"\r\n\r\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def test_a_content_length_over_the_limit_gets_413_before_any_upstream_byte(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scripted_proxy(LIMITED) as (proxy, origin):
        async with proxy.client() as client:
            await client.stream.send_all(post_head(b"Content-Length: 1001") + b"x" * 1001)
            [reply] = parse_responses(await read_until_closed(client.stream), method=b"POST")
        await proxy.logged()
    assert reply.status == 413
    assert reply.header(b"connection") == b"close"
    assert origin.accepted == 0 and proxy.upstream == []  # nothing went upstream
    assert proxy.records[0].status == 413
    assert proxy.server.ctx.stats.bodies_too_large == 1


async def test_a_body_at_the_limit_passes(autojump_clock: trio.testing.MockClock) -> None:
    async with scripted_proxy(LIMITED) as (proxy, _origin):
        async with proxy.client() as client:
            chunked = await client.request(b"POST", b"/", body=[b"x" * 500, b"y" * 500])
            length = await client.request(b"POST", b"/", body=b"x" * 1000)
    assert (chunked.status, chunked.body) == (length.status, length.body) == (200, b"1000")
    assert proxy.server.ctx.stats.bodies_too_large == 0


async def test_a_client_expecting_100_continue_gets_the_413_and_no_100(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scripted_proxy(LIMITED) as (proxy, origin):
        async with proxy.open() as stream:
            await stream.send_all(post_head(b"Content-Length: 5000", b"Expect: 100-continue"))
            with trio.fail_after(5):
                answer = await stream.receive_some(65536)  # the client sent no body byte
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"\r\nconnection: close\r\n" in answer.lower()
    assert origin.accepted == 0


async def test_a_buffered_chunked_body_past_the_limit_gets_413_with_nothing_upstream(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scripted_proxy(LIMITED) as (proxy, origin):
        async with proxy.client() as client:
            body = chunk(b"x" * 600) + chunk(b"y" * 600) + b"0\r\n\r\n"
            await client.stream.send_all(post_head(b"Transfer-Encoding: chunked") + body)
            [reply] = parse_responses(await read_until_closed(client.stream), method=b"POST")
        await proxy.logged()
    assert (reply.status, reply.header(b"connection")) == (413, b"close")
    assert origin.accepted == 0
    assert proxy.records[0].status == 413


async def test_a_streamed_chunked_body_is_stopped_at_the_limit_with_413(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Larger than the request buffer, so the origin has the head and the first bytes when
    the limit is passed: it gets no byte past the limit, and its connection is cut."""
    received = bytearray()
    origin_done = trio.Event()

    async def reads_everything(stream: MemoryStream) -> None:
        try:
            while data := await stream.receive_some(65536):
                received.extend(data)
        finally:
            origin_done.set()

    async with memory_proxy(STREAMED, origin=reads_everything) as proxy:
        async with proxy.client() as client:
            await client.stream.send_all(post_head(b"Transfer-Encoding: chunked"))
            for _ in range(30):
                await client.stream.send_all(chunk(b"z" * 1000))
            [reply] = parse_responses(await read_until_closed(client.stream), method=b"POST")
            with trio.fail_after(5):
                await origin_done.wait()  # the upstream connection was cut
        await proxy.logged()
    assert (reply.status, reply.header(b"connection")) == (413, b"close")
    assert 0 < received.count(b"z") <= 10_000  # never a byte past the limit
    assert proxy.records[0].status == 413
    assert proxy.server.pool.open_count == 0


async def test_past_the_limit_after_the_response_head_both_connections_are_cut(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An origin that answers while the body streams: the client has a response head, so no
    413 can be sent; the response is cut short (never completed with a wrong framing)."""
    origin_done = trio.Event()

    async def answers_early(stream: MemoryStream) -> None:
        try:
            await read_head(stream)
            await stream.send_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            await stream.send_all(b"5\r\nearly\r\n")
            while await stream.receive_some(65536):
                pass
        finally:
            origin_done.set()

    async with memory_proxy(STREAMED, origin=answers_early) as proxy:
        async with proxy.client() as client:
            await client.stream.send_all(post_head(b"Transfer-Encoding: chunked"))
            await client.stream.send_all(chunk(b"z" * 2000))
            with trio.fail_after(5):
                head = await client.stream.receive_some(65536)
            assert head.startswith(b"HTTP/1.1 200 ")
            for _ in range(10):
                await client.stream.send_all(chunk(b"z" * 1000))
            rest = await read_until_closed(client.stream)
            with trio.fail_after(5):
                await origin_done.wait()
        await proxy.logged()
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method=b"POST", target=b"/", headers=[(b"Host", b"x")]))
    conn.receive_data(bytes(head + rest))
    conn.receive_data(b"")
    events = []
    try:
        while (event := conn.next_event()) is not h11.NEED_DATA:
            events.append(type(event).__name__)
    except h11.RemoteProtocolError:
        events.append("cut")
    assert events[0] == "Response" and events[-1] == "cut"  # no end of message
    assert b"413" not in rest
    assert proxy.server.ctx.stats.bodies_too_large == 1


RULES = b"""
[limits]
max_request_body_bytes = 1000

[[rules]]
match = { path_prefix = "/upload/" }
max_request_body_bytes = 0

[[rules]]
match = { path = "/tiny" }
max_request_body_bytes = 10
"""


async def test_a_rule_limit_overrides_the_global_one_both_ways(
    autojump_clock: trio.testing.MockClock,
) -> None:
    settings = settings_from_bytes(RULES, file="trioproxy.toml")
    async with scripted_proxy(settings) as (proxy, origin):
        async with proxy.client() as client:
            lifted = await client.request(b"POST", b"/upload/big", body=b"x" * 5000)
        async with proxy.client() as client:
            global_limit = await client.request(b"POST", b"/other", body=b"x" * 5000)
        async with proxy.client() as client:
            tighter = await client.request(b"POST", b"/tiny", body=b"x" * 11)
    assert (lifted.status, lifted.body) == (200, b"5000")
    assert (global_limit.status, tighter.status) == (413, 413)
    assert origin.targets == [b"/upload/big"]
