"""Attacks on the heads read inline (the connection loop's request head, the exchange's
response head): what a first read brings beyond the head - a body, bytes past the body (a
second response), a response with no body followed by more bytes, an end of file right after
the head, pipelined requests split at the fast path's boundary - is handled as
`_read_request` and `read_response_head` handle it: nothing relayed that was not the answer,
no upstream connection reused with bytes left in it, the access line's fields right."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

from trioproxy.engine._memory import MemoryNetwork

from ..memnet import memory_proxy, scripted_proxy
from ..support import make_settings, read_until_closed

REQUEST_END = b"\r\n\r\n"
SMUGGLED = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nEVIL!"


def origin_answering(
    first: bytes, later: bytes
) -> Callable[[trio.abc.HalfCloseableStream], Awaitable[None]]:
    """The first connection: ``first`` written as soon as it opens (before the request is
    read: on a network whose pipes hold less than the proxy's request head it is there at
    the proxy's first read, so the inline path reads it); then ``later`` for every other
    request, on that connection or another (what an honest origin would say)."""
    connections = 0

    async def serve(stream: trio.abc.HalfCloseableStream) -> None:
        nonlocal connections
        connections += 1
        opening = connections == 1
        if opening:
            await stream.send_all(first)
        received, heads = b"", 0
        while True:
            while received.count(REQUEST_END) <= heads:
                data = await stream.receive_some(65536)
                if not data:
                    return
                received += data
            heads += 1
            if not (opening and heads == 1):  # (the first was answered already)
                await stream.send_all(later)

    return serve


async def two_requests(
    first: bytes, method: bytes = b"GET"
) -> tuple[list[tuple[int, bytes]], list[tuple[int, int, int]]]:
    """Two requests on one client connection, the first with ``method``: the replies, and
    the records' (status, upstream_status, body_bytes_sent)."""
    honest = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    network = MemoryNetwork(capacity=120)
    async with (
        memory_proxy(network=network, origin=origin_answering(first, honest)) as proxy,
        proxy.client() as client,
    ):
        with trio.fail_after(30):
            one = await client.request(method, b"/a")
            two = await client.request(b"GET", b"/b")
            await proxy.logged(2)
        replies = [(one.status, one.body), (two.status, two.body)]
        return replies, [(r.status, r.upstream_status, r.body_bytes_sent) for r in proxy.records]


async def test_a_second_response_after_the_body_in_the_first_read_is_never_relayed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    first = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + SMUGGLED
    replies, records = await two_requests(first)
    assert replies == [(200, b"ok"), (200, b"ok")]  # the second not EVIL!: no reuse
    assert records == [(200, 200, 2), (200, 200, 2)]


@pytest.mark.parametrize(
    ("head", "method", "status"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", b"HEAD", 200),
        (b"HTTP/1.1 204 No Content\r\n\r\n", b"GET", 204),
        (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", b"GET", 304),
    ],
    ids=["HEAD", "204", "304"],
)
async def test_bytes_after_a_bodiless_answer_are_not_its_body_nor_the_next_answer(
    autojump_clock: trio.testing.MockClock, head: bytes, method: bytes, status: int
) -> None:
    replies, records = await two_requests(head + SMUGGLED, method)
    assert replies == [(status, b""), (200, b"ok")]
    assert records == [(status, status, 0), (200, 200, 2)]


async def test_an_origin_closing_right_after_the_head_ends_the_client_connection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def serve(stream: trio.abc.HalfCloseableStream) -> None:
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
        received = b""
        while REQUEST_END not in received:
            received += await stream.receive_some(65536)
        await stream.aclose()

    network = MemoryNetwork(capacity=120)
    async with memory_proxy(network=network, origin=serve) as proxy:
        with trio.fail_after(30):
            reply = await proxy.exchange_raw(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
            await proxy.logged()
        record = proxy.records[0]
        # The head went out, no body could follow: the connection closed short of its length.
        assert reply.startswith(b"HTTP/1.1 200 ")
        assert reply.endswith(b"\r\n\r\n")
        assert (record.status, record.upstream_status, record.body_bytes_sent) == (200, 200, 0)
        await proxy.settled()
        proxy.check_no_leak()


async def test_pipelined_heads_split_at_every_byte_are_all_answered(
    autojump_clock: trio.testing.MockClock,
) -> None:
    one = b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n"
    two = b"GET /b HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    data = one + two
    async with scripted_proxy() as (proxy, _):
        for cut in range(len(one) - 3, len(data)):
            async with proxy.open() as stream:
                with trio.fail_after(30):
                    await stream.send_all(data[:cut])
                    await trio.sleep(0.01)
                    await stream.send_all(data[cut:])
                    reply = await read_until_closed(stream)
            assert reply.count(b"HTTP/1.1 200 ") == 2, cut


async def test_a_body_arriving_with_its_head_and_the_next_head_behind_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    post = b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
    get = b"GET /b HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    async with scripted_proxy() as (proxy, _):
        with trio.fail_after(30):
            reply = await proxy.exchange_raw(post + get)
            await proxy.logged(2)
    assert reply.count(b"HTTP/1.1 200 ") == 2
    assert [r.status for r in proxy.records] == [200, 200]
    assert [r.method for r in proxy.records] == [b"POST", b"GET"]
    assert b"\r\n\r\n5" in reply  # the origin got the 5 body bytes


async def test_expect_100_continue_with_the_body_held_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    head = b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n"
    head += b"Connection: close\r\n\r\n"
    async with scripted_proxy() as (proxy, _), proxy.open() as stream:
        with trio.fail_after(30):
            await stream.send_all(head)
            got = b""
            while b"HTTP/1.1 100 " not in got:
                got += await stream.receive_some(65536)
            await stream.send_all(b"hello")
            got += await read_until_closed(stream)
            await proxy.logged()
    assert got.count(b"HTTP/1.1 100 ") == 1
    assert b"HTTP/1.1 200 " in got and got.endswith(b"\r\n\r\n5")
    assert proxy.records[0].status == 200


async def test_a_second_response_after_a_chunked_body_in_the_first_read_is_never_relayed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    first = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n" + SMUGGLED
    replies, records = await two_requests(first)
    assert replies == [(200, b"ok"), (200, b"ok")]
    assert records == [(200, 200, 2), (200, 200, 2)]


async def test_a_bad_chunk_in_the_first_read_aborts_the_response(
    autojump_clock: trio.testing.MockClock,
) -> None:
    first = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXX0\r\n\r\n"
    close_request = b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    network = MemoryNetwork(capacity=120)
    honest = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    async with memory_proxy(network=network, origin=origin_answering(first, honest)) as proxy:
        with trio.fail_after(30):
            reply = await proxy.exchange_raw(close_request)
            await proxy.logged()
        # Checked before the head went out: a 502 instead, nothing of the body relayed.
        assert reply.startswith(b"HTTP/1.1 502 ") and b"okXX" not in reply
        assert (proxy.records[0].status, proxy.records[0].upstream_status) == (502, 200)
        await proxy.settled()
        proxy.check_no_leak()


async def test_a_reused_connection_closed_on_the_request_is_retried_on_a_fresh_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The stale keep-alive race: the origin reads the second request on a kept connection
    # and closes it without a byte (the retry now inside `serve`).
    connections = 0

    async def serve(stream: trio.abc.HalfCloseableStream) -> None:
        nonlocal connections
        connections += 1
        received, heads = b"", 0
        while True:
            while received.count(REQUEST_END) <= heads:
                data = await stream.receive_some(65536)
                if not data:
                    return
                received += data
            heads += 1
            if connections == 1 and heads == 2:
                await stream.aclose()
                return
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    async with memory_proxy(origin=serve) as proxy, proxy.client() as client:
        with trio.fail_after(30):
            one = await client.request(b"GET", b"/a")
            two = await client.request(b"GET", b"/b")
            await proxy.logged(2)
        assert [(one.status, one.body), (two.status, two.body)] == [(200, b"ok")] * 2
        assert proxy.server.ctx.stats.retries == 1 and connections == 2
        assert [(r.status, r.upstream_status) for r in proxy.records] == [(200, 200)] * 2


async def test_a_body_to_the_end_of_file_in_the_first_read_is_relayed_whole(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def serve(stream: trio.abc.HalfCloseableStream) -> None:
        await stream.send_all(b"HTTP/1.1 200 OK\r\n\r\nhello")  # (no length: to the end)
        received = b""
        while REQUEST_END not in received:
            received += await stream.receive_some(65536)
        await stream.aclose()

    network = MemoryNetwork(capacity=120)
    async with memory_proxy(network=network, origin=serve) as proxy, proxy.client() as client:
        with trio.fail_after(30):
            reply = await client.request(b"GET", b"/x")
            await proxy.logged()
        assert (reply.status, reply.body) == (200, b"hello")
        record = proxy.records[0]
        assert (record.status, record.upstream_status, record.body_bytes_sent) == (200, 200, 5)


@pytest.mark.parametrize(
    "first", [b"HTTP/1.1 200 OK\r\nX: ", b"HTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 2"]
)
async def test_a_head_cut_short_in_the_first_read_times_out_at_upstream_response_s(
    autojump_clock: trio.testing.MockClock, first: bytes
) -> None:
    async def serve(stream: trio.abc.HalfCloseableStream) -> None:
        await stream.send_all(first)
        received = b""
        while REQUEST_END not in received:
            received += await stream.receive_some(65536)
        await trio.sleep_forever()  # (the rest of the head never comes)

    settings = make_settings(timeouts__upstream_response_s=5.0)
    network = MemoryNetwork(capacity=120)
    async with memory_proxy(settings, network=network, origin=serve) as proxy:
        started = trio.current_time()
        with trio.fail_after(30):
            reply = await proxy.exchange_raw(
                b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
            )
            await proxy.logged()
        took = trio.current_time() - started
    assert reply.startswith((b"HTTP/1.1 504 ", b"HTTP/1.1 103 "))
    assert reply.count(b"HTTP/1.1 504 ") == 1
    assert 5.0 <= took < 5.5
    assert proxy.records[0].status == 504


async def test_the_journal_records_both_exchanges_of_a_smuggling_origin_as_they_were(
    autojump_clock: trio.testing.MockClock,
) -> None:
    first = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 1\r\n\r\nok" + SMUGGLED
    honest = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-B: 2\r\n\r\nok"
    network = MemoryNetwork(capacity=120)
    settings = make_settings(admin__journal_size=3)
    origin = origin_answering(first, honest)
    async with (
        memory_proxy(settings, network=network, origin=origin) as proxy,
        proxy.client() as client,
    ):
        with trio.fail_after(30):
            await client.request(b"HEAD", b"/a")
            await client.request(b"GET", b"/b")
            await proxy.logged(2)
        journal = proxy.server.journal
        assert journal is not None
        one, two = journal
        assert (one.method, one.status, one.upstream_status, one.upstream_reused) == (
            "HEAD",
            200,
            200,
            False,
        )
        assert one.upstream_headers is not None and ("X-A", "1") in one.upstream_headers
        assert (two.method, two.status, two.upstream_status, two.upstream_reused) == (
            "GET",
            200,
            200,
            False,  # (the first connection had bytes left: closed, not reused)
        )
        assert two.upstream_headers is not None and ("X-B", "2") in two.upstream_headers
        assert one.forwarded_target == "/a" and two.forwarded_target == "/b"
