"""The connection loop without sockets, on the autojump clock: keep-alive, pipelining, the
idle and first-byte deadlines, keepalive_requests, eviction at the connection limit, slow
and odd request heads. (Draining: `test_drain`.)"""

from __future__ import annotations

import contextlib

import pytest
import trio
import trio.testing

from ..memnet import (
    in_flight,
    memory_proxy,
    scripted_proxy,
    wait_until,
)
from ..support import make_settings, parse_responses, read_until_closed

GET = b"GET /small HTTP/1.1\r\nHost: x\r\n\r\n"


async def test_pipelined_requests_are_answered_in_order_over_one_upstream_connection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scripted_proxy() as (proxy, origin):
        async with proxy.open() as stream:
            requests = b"".join(
                b"GET /%s HTTP/1.1\r\nHost: x\r\n\r\n" % name for name in (b"a", b"b", b"c")
            )
            last = b"GET /close HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            await stream.send_all(requests + last)
            with trio.fail_after(5):
                replies = parse_responses(await read_until_closed(stream))
    assert [r.status for r in replies] == [200] * 4
    assert origin.targets == [b"/a", b"/b", b"/c", b"/close"]
    assert origin.accepted == 1
    assert [r.target for r in proxy.records] == [b"/a", b"/b", b"/c", b"/close"]


async def test_an_idle_keep_alive_connection_is_closed_after_client_idle_s(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scripted_proxy(timeouts__client_idle_s=75.0) as (proxy, _origin):
        async with proxy.client() as client:
            assert (await client.request(b"GET", b"/small")).status == 200
            answered = trio.current_time()
            with trio.fail_after(100):
                assert await client.stream.receive_some(1) == b""
            assert 75.0 <= trio.current_time() - answered < 76.0
    assert len(proxy.records) == 1  # closing an idle connection logs nothing


async def test_a_connection_that_never_sends_a_byte_is_closed_at_the_head_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    settings = make_settings(timeouts__client_header_s=10.0, timeouts__client_idle_s=75.0)
    async with memory_proxy(settings) as proxy:
        stream = proxy.open()
        async with stream:
            opened = trio.current_time()
            with trio.fail_after(60):
                assert await stream.receive_some(1) == b""
            assert 10.0 <= trio.current_time() - opened < 11.0
        await wait_until(lambda: proxy.server.ctx.stats.connections_open == 0)
    assert proxy.records == []  # silent, not a 408: there was no request to answer


async def test_a_head_trickled_past_its_deadline_gets_a_408(
    autojump_clock: trio.testing.MockClock,
) -> None:
    settings = make_settings(timeouts__client_header_s=10.0)
    async with memory_proxy(settings) as proxy:
        stream = proxy.open()
        async with stream, trio.open_nursery() as nursery:

            async def trickle() -> None:
                with contextlib.suppress(trio.BrokenResourceError):  # until it is cut off
                    for byte in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"y" * 1000:
                        await stream.send_all(bytes([byte]))
                        await trio.sleep(1.0)  # virtual: a byte a second, inside any timeout

            nursery.start_soon(trickle)
            opened = trio.current_time()
            with trio.fail_after(60):
                answer = await read_until_closed(stream)
            # Its slot is free at the deadline: a client too slow to send a head gets no
            # linger (the answer's half-close came first, so the client cannot tell).
            await trio.testing.wait_all_tasks_blocked()
            assert proxy.server.ctx.stats.connections_open == 0
            nursery.cancel_scope.cancel()
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert 10.0 <= trio.current_time() - opened <= 10.5
    assert [r.status for r in proxy.records] == [408]


async def test_keepalive_requests_closes_the_connection_after_the_last_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scripted_proxy(limits__keepalive_requests=2) as (proxy, _origin):
        async with proxy.client() as client:
            first = await client.request(b"GET", b"/small")
            second = await client.request(b"GET", b"/small")
            with trio.fail_after(5):
                assert await client.stream.receive_some(1) == b""
    assert first.header(b"connection") is None
    assert second.header(b"connection") == b"close"
    assert len(proxy.records) == 2


async def test_at_the_connection_limit_the_oldest_idle_connection_makes_room(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scripted_proxy(limits__max_connections=2, timeouts__client_idle_s=600.0) as (
        proxy,
        _origin,
    ):
        async with proxy.client() as oldest, proxy.client() as younger:
            assert (await oldest.request(b"GET", b"/small")).status == 200
            assert (await younger.request(b"GET", b"/small")).status == 200
            started = trio.current_time()
            with trio.fail_after(5):  # idle connections would last 600 s
                async with proxy.client() as newcomer:
                    assert (await newcomer.request(b"GET", b"/small")).status == 200
                assert await oldest.stream.receive_some(1) == b""
            assert trio.current_time() - started < 1.0
            assert (await younger.request(b"GET", b"/small")).status == 200  # kept


async def test_a_newcomer_waits_while_every_connection_is_busy(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scripted_proxy(limits__max_connections=1) as (proxy, origin):
        async with proxy.client() as busy, proxy.client() as newcomer:
            await in_flight(busy, origin, b"/slow/30")
            started = trio.current_time()
            with trio.fail_after(60):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(busy.read_reply)
                    reply = await newcomer.request(b"GET", b"/small")
            # Served only once the busy exchange ended and its connection went idle.
            assert reply.status == 200
            assert trio.current_time() - started >= 30.0
    assert origin.targets == [b"/slow/30", b"/small"]


async def test_empty_lines_before_a_request_are_ignored(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scripted_proxy() as (proxy, _origin):
        stream = proxy.open()
        async with stream:
            # Before the first request, and between requests (a stray CRLF after a body).
            await stream.send_all(
                b"\r\n\r\n"
                + GET
                + b"POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi\r\n"
                + b"GET /close HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            with trio.fail_after(5):
                replies = parse_responses(await read_until_closed(stream))
    assert [(r.status, r.body) for r in replies] == [(200, b"ok"), (200, b"2"), (200, b"ok")]
    assert [r.status for r in proxy.records] == [200, 200, 200]


async def test_an_oversized_request_line_gets_a_414_and_a_close(
    autojump_clock: trio.testing.MockClock,
) -> None:
    settings = make_settings(limits__max_request_line_bytes=100)
    async with memory_proxy(settings) as proxy:
        with trio.fail_after(5):
            answer = await proxy.exchange_raw(
                b"GET /" + b"a" * 200 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
            )
    assert answer.startswith(b"HTTP/1.1 414 ")
    assert [r.status for r in proxy.records] == [414]


async def test_a_head_rejected_while_still_arriving_is_answered_before_the_close(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A request line far over the limit, still being sent when the proxy answers 414:
    closing with its bytes unread would reset the connection and destroy the answer."""
    settings = make_settings(limits__max_request_line_bytes=100)
    async with memory_proxy(settings) as proxy:
        stream = proxy.open()
        async with stream, trio.open_nursery() as nursery:

            async def send_a_huge_line() -> None:
                with contextlib.suppress(trio.BrokenResourceError):
                    await stream.send_all(b"GET /" + b"a" * 1_000_000)

            nursery.start_soon(send_a_huge_line)
            with trio.fail_after(5):
                answer = await read_until_closed(stream)
            nursery.cancel_scope.cancel()
    assert answer.startswith(b"HTTP/1.1 414 ")
    assert [r.status for r in proxy.records] == [414]


# From the former test_answer_408.py: A 408 for a head trickled past its deadline reaches the
# client, whatever else the event loop is doing at that moment.

HEAD = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"y" * 1000


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("idle_timeout_s", [4.0, 5.0, 3.0, 7.0])
async def test_a_head_trickled_past_its_deadline_gets_its_408_whatever_the_schedule(
    autojump_clock: trio.testing.MockClock, idle_timeout_s: float, seed: int
) -> None:
    settings = make_settings(
        timeouts__client_header_s=10.0, upstream__idle_timeout_s=idle_timeout_s
    )
    async with memory_proxy(settings, seed=seed) as proxy:
        stream = proxy.open()
        async with stream, trio.open_nursery() as nursery:

            async def trickle() -> None:
                with contextlib.suppress(trio.BrokenResourceError):  # until it is cut off
                    for byte in HEAD:
                        await stream.send_all(bytes([byte]))
                        await trio.sleep(1.0)  # a byte a second, inside any timeout

            nursery.start_soon(trickle)
            with trio.fail_after(60):
                answer = await read_until_closed(stream)
            await trio.testing.wait_all_tasks_blocked()
            assert proxy.server.ctx.stats.connections_open == 0  # still no linger for it
            nursery.cancel_scope.cancel()
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert [r.status for r in proxy.records] == [408]
