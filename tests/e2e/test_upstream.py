"""Upstream behaviour: error statuses, stale keep-alive retry, 1xx, response header rules.

The origins here are raw trio servers, because they must misbehave in ways a framework
would not allow (close mid-exchange, answer twice, send hop-by-hop headers).
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable

import h11
import trio

from ..support import (
    answering,
    exchange_raw,
    make_settings,
    read_head,
    running_proxy,
    unused_address,
)


def _response(body: bytes = b"ok", extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


async def test_unreachable_upstream_is_502() -> None:
    async with (
        running_proxy(await unused_address()) as proxy,
        proxy.client() as client,
    ):
        reply = await client.request(b"GET", b"/")
        again = await client.request(b"GET", b"/")  # the connection survives a 502
    assert reply.status == 502
    assert reply.body == b"502 Bad Gateway\n"
    assert reply.header(b"content-type") == b"text/plain; charset=utf-8"
    assert again.status == 502
    assert proxy.records[0].status == 502
    assert proxy.records[0].upstream_status == 0


async def test_unresolvable_upstream_is_502() -> None:
    async with running_proxy(("no-such-host.invalid", 80)) as proxy:
        async with proxy.client() as client:
            reply = await client.request(b"GET", b"/")
    assert reply.status == 502


async def test_slow_upstream_is_504() -> None:
    async def never_answers(stream: trio.SocketStream) -> None:
        await read_head(stream)
        await trio.sleep_forever()

    settings = make_settings(timeouts__upstream_response_s=0.2)
    async with running_proxy(never_answers, settings) as proxy:
        async with proxy.client() as client:
            reply = await client.request(b"GET", b"/")
    assert reply.status == 504
    assert proxy.server.pool.open_count == 0  # the timed-out connection was discarded


async def test_upstream_reset_before_response_is_502() -> None:
    async def hangs_up(stream: trio.SocketStream) -> None:
        await read_head(stream)

    async with running_proxy(hangs_up) as proxy:
        async with proxy.client() as client:
            assert (await client.request(b"GET", b"/")).status == 502
            assert (await client.request(b"POST", b"/", body=b"x")).status == 502


async def test_malformed_upstream_response_is_502() -> None:
    babbles = answering(b"HTTP/1.1 200 OK\r\nBad Header Line\r\n\r\n")

    async with running_proxy(babbles) as proxy:
        async with proxy.client() as client:
            assert (await client.request(b"GET", b"/")).status == 502


async def test_upstream_response_with_both_framings_is_502() -> None:
    ambiguous = answering(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n"
    )

    async with running_proxy(ambiguous) as proxy, proxy.client() as client:
        assert (await client.request(b"GET", b"/")).status == 502


def _stale_after_first(accepted: list[int]) -> Callable[[trio.SocketStream], Awaitable[None]]:
    """An origin whose first connection answers once, then reads the next request and
    hangs up without a byte: the keep-alive race, made deterministic."""

    async def handler(stream: trio.SocketStream) -> None:
        accepted.append(1)
        number = len(accepted)
        await read_head(stream)
        await stream.send_all(_response(b"first" if number == 1 else b"fresh"))
        if number == 1:
            await read_head(stream)
            return  # closes without answering the second request
        while await read_head(stream):
            await stream.send_all(_response(b"fresh"))

    return handler


async def test_stale_pooled_connection_is_retried_once_for_get() -> None:
    accepted: list[int] = []
    async with running_proxy(_stale_after_first(accepted)) as proxy, proxy.client() as client:
        assert (await client.request(b"GET", b"/")).body == b"first"
        reply = await client.request(b"GET", b"/")
    assert (reply.status, reply.body) == (200, b"fresh")
    assert len(accepted) == 2
    assert proxy.server.ctx.stats.retries == 1


async def test_stale_pooled_connection_is_never_retried_for_post() -> None:
    accepted: list[int] = []
    async with running_proxy(_stale_after_first(accepted)) as proxy, proxy.client() as client:
        await client.request(b"GET", b"/")
        reply = await client.request(b"POST", b"/", body=b"payload")
    assert reply.status == 502
    assert len(accepted) == 1
    assert proxy.server.ctx.stats.retries == 0


async def test_fresh_connection_failure_is_not_retried() -> None:
    accepted: list[int] = []

    async def hangs_up(stream: trio.SocketStream) -> None:
        accepted.append(1)
        await read_head(stream)

    async with running_proxy(hangs_up) as proxy:
        async with proxy.client() as client:
            assert (await client.request(b"GET", b"/")).status == 502
    assert len(accepted) == 1


async def test_origin_closed_idle_connection_is_not_reused() -> None:
    accepted: list[int] = []

    async def one_answer_then_close(stream: trio.SocketStream) -> None:
        accepted.append(1)
        await read_head(stream)
        await stream.send_all(_response())
        # closes the keep-alive connection while it idles in the pool

    async with running_proxy(one_answer_then_close) as proxy:
        async with proxy.client() as client:
            assert (await client.request(b"GET", b"/")).status == 200
            # Wait until the origin's FIN has reached the pooled socket.
            (idle,) = proxy.server.pool._idle
            await idle.wait_readable()
            assert (await client.request(b"GET", b"/")).status == 200
    assert len(accepted) == 2
    assert proxy.server.ctx.stats.retries == 0  # detected before use, not by failing


async def test_connection_close_and_http10_responses_are_not_pooled() -> None:
    responses = [
        _response(extra=b"Connection: close\r\n"),
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ]

    async def answers_and_lingers(stream: trio.SocketStream) -> None:
        await read_head(stream)
        await stream.send_all(responses.pop(0))
        await trio.sleep_forever()  # leaves closing to the proxy

    async with running_proxy(answers_and_lingers) as proxy:
        async with proxy.client() as client:
            for _ in range(2):
                reply = await client.request(b"GET", b"/")
                assert reply.status == 200
                assert reply.header(b"connection") is None  # hop-by-hop: not passed on
                assert proxy.server.pool.idle_count == 0
                assert proxy.server.pool.open_count == 0


async def test_hop_by_hop_response_headers_are_stripped() -> None:
    chatty = answering(
        _response(
            extra=b"Connection: X-Internal\r\nX-Internal: secret\r\nKeep-Alive: timeout=9\r\n"
            b"Proxy-Authenticate: Basic\r\nTrailer: X-T\r\nUpgrade: h2c\r\nX-End: kept\r\n"
        )
    )

    async with running_proxy(chatty) as proxy:
        async with proxy.client() as client:
            reply = await client.request(b"GET", b"/")
    names = {name.lower() for name, _ in reply.headers}
    assert names.isdisjoint(
        {b"connection", b"x-internal", b"keep-alive", b"proxy-authenticate", b"trailer", b"upgrade"}
    )
    assert reply.header(b"x-end") == b"kept"
    assert reply.header(b"via") == b"1.1 trioproxy"


async def test_informational_responses_are_relayed_before_the_final_one() -> None:
    async def early_hints(stream: trio.SocketStream) -> None:
        await read_head(stream)
        await stream.send_all(
            b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
        )
        await stream.send_all(_response(b"final"))

    async with running_proxy(early_hints) as proxy:
        async with proxy.client() as client:
            reply = await client.request(b"GET", b"/")
        http10 = await exchange_raw(proxy.address, b"GET / HTTP/1.0\r\n\r\n")
    assert [(i.status_code, i.headers.raw_items()[0]) for i in reply.informational] == [
        (103, (b"Link", b"</style.css>; rel=preload"))
    ]
    assert (reply.status, reply.body) == (200, b"final")
    assert b" 103 " not in http10 and b" 200 " in http10  # no 1xx for an HTTP/1.0 client


async def test_204_and_304_carry_no_body() -> None:
    heads = [b"HTTP/1.1 204 No Content\r\n\r\n", b'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\n\r\n']

    async def bodiless(stream: trio.SocketStream) -> None:
        while heads and await read_head(stream):
            await stream.send_all(heads.pop(0))

    async with running_proxy(bodiless) as proxy:
        async with proxy.client() as client:
            no_content = await client.request(b"DELETE", b"/")
            not_modified = await client.request(b"GET", b"/", [(b"If-None-Match", b'"x"')])
    assert (no_content.status, no_content.body) == (204, b"")
    assert (not_modified.status, not_modified.body) == (304, b"")
    assert not_modified.header(b"etag") == b'"x"'


async def test_chunked_response_with_trailers_streams_through() -> None:
    chunky = answering(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: 42\r\n\r\n"
    )

    async with running_proxy(chunky) as proxy:
        async with proxy.client() as client:
            reply = await client.request(b"GET", b"/")
            raw_conn: h11.Connection = client.conn
    assert reply.body == b"hello world"
    assert reply.header(b"transfer-encoding") == b"chunked"
    assert raw_conn.their_http_version == b"1.1"


async def test_upstream_failure_mid_body_aborts_the_client_connection() -> None:
    truncates = answering(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly-part")

    async with running_proxy(truncates) as proxy:
        data = await exchange_raw(proxy.address, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    # The client sees a head promising 100 bytes, fewer bytes, then a close: a truncation it
    # can detect, never a well-formed short response.
    assert data.startswith(b"HTTP/1.1 200 ")
    assert b"Content-Length: 100" in data
    assert data.endswith(b"only-part")


class ChangingDNS(trio.abc.HostnameResolver):
    """Behind trio's hostname-resolver hook: the n-th lookup of a name gets the n-th answer."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.asked = 0

    async def getaddrinfo(  # type: ignore[override]  # (trio's signature is untyped)
        self,
        host: bytes | str | None,
        port: bytes | str | int | None,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[tuple[int, int, int, str, tuple[str, int]]]:
        await trio.lowlevel.checkpoint()
        assert isinstance(port, int)
        if host in (b"127.0.0.1", "127.0.0.1"):  # numeric hosts elsewhere in the test
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        self.asked += 1
        answer = self.answers[min(self.asked, len(self.answers)) - 1]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answer, port))]

    async def getnameinfo(
        self, sockaddr: tuple[str, int] | tuple[str, int, int, int], flags: int
    ) -> tuple[str, str]:
        raise NotImplementedError


async def test_proxy_follows_a_changed_answer(origin: tuple[str, int]) -> None:
    """next-hop moves from a dead address to the live origin: after the TTL, requests work.
    (From the former e2e/test_resolver.py: the system resolver's path, through trio's hook.)"""
    dns = ChangingDNS("127.0.0.2", "127.0.0.1")  # nothing listens on 127.0.0.2:port
    trio.socket.set_custom_hostname_resolver(dns)
    settings = make_settings(upstream__dns_ttl_s=0.0)
    async with running_proxy(("next-hop", origin[1]), settings) as proxy:
        async with proxy.client() as client:
            assert (await client.request(b"GET", b"/")).status == 502
            assert (await client.request(b"GET", b"/")).status == 200
    assert dns.asked >= 2  # and again in the background, as the answer expires at once
