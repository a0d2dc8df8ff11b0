"""Body hook points on the memory network: streaming transformers per slice with the body
re-framed by the proxy, backpressure kept, a whole-body view bounded by max_bytes, and
errors mid-body."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trioproxy.hooks import Exchange, whole_body

from .test_hooks import one_hook


class Upper:
    """Both bodies in upper case, slice by slice; the end adds a marker."""

    def __init__(self) -> None:
        self.slices: list[int] = []

    async def request_body(self, exchange: Exchange, chunk: bytes, end: bool) -> bytes:
        self.slices.append(len(chunk))
        await trio.lowlevel.checkpoint()
        return chunk.upper() + (b"!" if end else b"")

    async def response_body(self, exchange: Exchange, chunk: bytes, end: bool) -> bytes:
        await trio.lowlevel.checkpoint()
        return chunk.upper() + (b"<end>" if end else b"")


async def test_request_and_response_bodies_are_transformed_and_reframed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    upper = Upper()
    async with one_hook("upper", upper) as (proxy, origin):
        async with proxy.client() as client:
            posted = await client.request(b"POST", b"/upload", body=b"abc" * 1000)
            got = await client.request(b"GET", b"/small")
            head = await client.request(b"HEAD", b"/small")
    # The origin answers a body with its length: it got 3001 bytes (the "!" added), chunked.
    assert (posted.status, posted.body) == (200, b"3001<end>")
    request_head = origin.heads[0].headers.raw_items()
    assert (b"Transfer-Encoding", b"chunked") in request_head
    assert not any(k.lower() == b"content-length" for k, _ in request_head)
    assert (got.status, got.body) == (200, b"OK<end>")
    assert got.header(b"content-length") is None  # h11 framed it (chunked)
    assert head.status == 200 and head.body == b""
    assert sum(upper.slices) == 3000


async def test_a_body_streams_through_a_transformer_with_backpressure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # 2 MB through a transformer, the client reading slowly: the proxy never holds more than
    # its buffers, and the transformer sees every byte once.
    seen = 0

    class Count:
        async def response_body(self, exchange: Exchange, chunk: bytes, end: bool) -> bytes:
            nonlocal seen
            seen += len(chunk)
            return chunk

    async with one_hook("count", Count()) as (proxy, origin):
        async with proxy.client() as client:
            await client.stream.send_all(b"GET /big/2000000 HTTP/1.1\r\nHost: x\r\n\r\n")
            await trio.sleep(1)
            # The origin is stopped by backpressure long before it sent everything.
            assert origin.sent < 1_000_000
            reply = await client.read_reply()
    assert len(reply.body) == 2_000_000 and seen == 2_000_000


class Rewrite:
    @whole_body(max_bytes=64)
    async def response_body(self, exchange: Exchange, body: bytes) -> bytes:
        return b"[" + body + b"]"


async def test_a_whole_body_view_up_to_max_bytes_and_unchanged_beyond(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with one_hook("rewrite", Rewrite()) as (proxy, _origin):
        async with proxy.client() as client:
            small = await client.request(b"GET", b"/small")
            large = await client.request(b"GET", b"/big/1000")
    assert small.body == b"[ok]"
    assert large.body == b"b" * 1000  # passed on unchanged
    assert any("body over max_bytes (64)" in r.getMessage() for r in caplog.records)


async def failing(exchange: Exchange, chunk: bytes, end: bool) -> bytes:
    raise RuntimeError("mid-body")


class FailsOnResponse:
    response_body = staticmethod(failing)


class FailsOnRequest:
    request_body = staticmethod(failing)


async def test_a_body_hook_that_fails_with_pass_lets_the_body_through_unchanged(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with one_hook("h", FailsOnResponse()) as (proxy, _origin):
        async with proxy.client() as client:
            reply = await client.request(b"GET", b"/big/5000")
    assert reply.body == b"b" * 5000
    assert proxy.server.hook_stats["h"].errors == 1  # then left out for the rest


async def test_a_request_body_hook_that_fails_with_503_answers_503(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with one_hook("h", FailsOnRequest(), on_error=503) as (proxy, _origin):
        async with proxy.client() as client:
            reply = await client.request(b"POST", b"/upload", body=b"x" * 10)
    assert reply.status == 503
    proxy.check_no_leak()
