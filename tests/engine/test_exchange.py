"""One exchange without sockets, on the autojump clock: request bodies buffered or streamed,
100-continue, early answers, 1xx, the response deadline, the client watch, and responses
read ahead or streamed under backpressure. (The stale-connection retry: `test_retry`.)"""

from __future__ import annotations

import contextlib

import trio
import trio.testing

from trioproxy.engine._memory import MemoryNetwork

from ..memnet import (
    MemoryStream,
    memory_proxy,
    scripted_proxy,
    sent_by_hand,
    wait_until,
)
from ..support import Client, Reply, answering, make_settings, read_head

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def post_head(length: int, *extra: bytes) -> bytes:
    lines = [b"POST /upload HTTP/1.1", b"Host: x", b"Content-Length: %d" % length, *extra]
    return b"\r\n".join(lines) + b"\r\n\r\n"


async def rest_of_upload(client: Client, rest: bytes, length: int) -> Reply:
    """Send the ``rest`` of a ``post_head(length)`` body the test began by hand; the reply."""
    await client.stream.send_all(rest)
    sent_by_hand(client, b"POST", b"/upload", length)
    return await client.read_reply()


async def test_a_body_that_fits_the_buffer_is_read_whole_before_the_origin_hears_of_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scripted_proxy() as (proxy, origin):
        async with proxy.client() as client:
            await client.stream.send_all(post_head(1000) + b"x" * 500)
            await trio.testing.wait_all_tasks_blocked()
            assert origin.accepted == 0 and proxy.upstream == []  # no connection held for it
            reply = await rest_of_upload(client, b"x" * 500, 1000)
    assert (reply.status, reply.body) == (200, b"1000")


async def test_a_body_larger_than_the_buffer_streams_while_it_arrives(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scripted_proxy(limits__request_buffer_bytes=1024) as (proxy, origin):
        async with proxy.client() as client:
            await client.stream.send_all(post_head(100_000) + b"x" * 50_000)
            await wait_until(lambda: origin.targets == [b"/upload"])  # before the body ended
            reply = await rest_of_upload(client, b"x" * 50_000, 100_000)
    assert (reply.status, reply.body) == (200, b"100000")


async def test_expect_100_continue_is_answered_by_the_proxy_for_a_small_body(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scripted_proxy() as (proxy, origin):
        async with proxy.client() as client:
            await client.stream.send_all(post_head(10, b"Expect: 100-continue"))
            with trio.fail_after(5):
                interim = await client.stream.receive_some(65536)
            assert interim.startswith(b"HTTP/1.1 100 ")
            assert origin.accepted == 0  # answered by the proxy, not the origin
            reply = await rest_of_upload(client, b"0123456789", 10)
    assert (reply.status, reply.body) == (200, b"10")
    assert all(name.lower() != b"expect" for name, _ in origin.heads[0].headers)


async def test_an_early_answer_from_the_origin_is_relayed_and_says_close(
    autojump_clock: trio.testing.MockClock,
) -> None:
    refuses = answering(b"HTTP/1.1 413 Too Large\r\nContent-Length: 4\r\n\r\nbig!", hold=True)
    settings = make_settings(limits__request_buffer_bytes=1024)
    async with memory_proxy(settings, origin=refuses) as proxy:
        async with proxy.client() as client, trio.open_nursery() as nursery:
            await client.stream.send_all(post_head(10_000_000))

            async def keep_sending() -> None:
                with contextlib.suppress(trio.BrokenResourceError):
                    for _ in range(100):  # bounded: 10 MB at most
                        await client.stream.send_all(b"x" * 100_000)

            nursery.start_soon(keep_sending)
            sent_by_hand(client, b"POST", b"/upload", 10_000_000)
            with trio.fail_after(5):
                reply = await client.read_reply()
            nursery.cancel_scope.cancel()
        assert proxy.upstream_open == proxy.server.pool.open_count == 0  # not reusable
    assert (reply.status, reply.body) == (413, b"big!")
    assert reply.header(b"connection") == b"close"


async def test_informational_responses_are_relayed_before_the_final_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def hints(stream: MemoryStream) -> None:
        await read_head(stream)
        await stream.send_all(b"HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n")
        await trio.sleep(2.0)  # virtual: past the client watch's start
        await stream.send_all(b"HTTP/1.1 103 Early Hints\r\nLink: </b>; rel=preload\r\n\r\n")
        await stream.send_all(OK)

    async with memory_proxy(origin=hints) as proxy:
        async with proxy.client() as client:
            reply = await client.request(b"GET", b"/")
    assert (reply.status, reply.body) == (200, b"ok")
    assert [i.status_code for i in reply.informational] == [103, 103]
    assert [dict(i.headers)[b"link"] for i in reply.informational] == [
        b"</a>; rel=preload",
        b"</b>; rel=preload",
    ]


async def test_a_flood_of_informational_responses_is_capped_with_a_502(
    autojump_clock: trio.testing.MockClock,
) -> None:
    flood = answering(b"HTTP/1.1 103 Early Hints\r\n\r\n" * 5000, hold=True)
    async with memory_proxy(origin=flood) as proxy:
        async with proxy.client() as client:
            with trio.fail_after(5):
                reply = await client.request(b"GET", b"/")
    assert reply.status == 502
    assert len(reply.informational) == 32


async def test_endless_slow_informational_responses_meet_the_response_deadline_504(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def a_hint_a_second(stream: MemoryStream) -> None:
        await read_head(stream)
        for _ in range(20):  # under the cap of 32, each inside any read timeout
            await stream.send_all(b"HTTP/1.1 103 Early Hints\r\n\r\n")
            await trio.sleep(1.0)
        await trio.sleep_forever()

    settings = make_settings(timeouts__upstream_response_s=10.0)
    async with memory_proxy(settings, origin=a_hint_a_second) as proxy:
        async with proxy.client() as client:
            started = trio.current_time()
            with trio.fail_after(60):
                reply = await client.request(b"GET", b"/")
            assert 10.0 <= trio.current_time() - started < 11.0
    assert reply.status == 504
    assert len(reply.informational) == 10


async def test_a_response_that_fits_the_buffer_frees_its_upstream_before_the_client_reads(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scripted_proxy(network=MemoryNetwork(capacity=4096)) as (proxy, _origin):
        async with proxy.client() as client:
            await client.stream.send_all(b"GET /big/50000 HTTP/1.1\r\nHost: x\r\n\r\n")
            await wait_until(lambda: proxy.server.pool.idle_count == 1)  # nothing read yet
            assert not proxy.records  # the exchange is still sending to the client
            sent_by_hand(client, b"GET", b"/big/50000")
            reply = await client.read_reply()
    assert reply.body == b"b" * 50_000


async def test_a_response_past_the_buffer_streams_under_backpressure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    size = 2_000_000
    async with scripted_proxy(network=MemoryNetwork(capacity=4096)) as (proxy, origin):
        async with proxy.client() as client:
            await client.stream.send_all(b"GET /big/%d HTTP/1.1\r\nHost: x\r\n\r\n" % size)
            await wait_until(lambda: origin.sent)
            await trio.testing.wait_all_tasks_blocked()
            # The client reads nothing: the origin's writes block once the proxy's read-ahead
            # (limits.response_buffer_bytes) and the pipes are full.
            blocked_at = origin.sent
            assert blocked_at <= 65536 * 3
            assert proxy.server.pool.idle_count == 0  # still streaming: the connection is busy
            sent_by_hand(client, b"GET", b"/big/%d" % size)
            reply = await client.read_reply()
    assert len(reply.body) == size
    assert proxy.records[0].body_bytes_sent == size


async def test_a_streamed_body_trickled_inside_each_timeout_is_cut_by_the_rate_floor(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Past the buffer the body streams (an upstream connection held); a byte every 50 s
    beats the 60 s inactivity timeout but not the 1 KiB/s floor after it: 408, and the
    upstream connection, mid-request, is closed."""
    async with scripted_proxy() as (proxy, origin):
        stream = proxy.open()
        async with stream, trio.open_nursery() as nursery:
            started = trio.current_time()
            await stream.send_all(post_head(1_000_000) + b"y" * 70_000)
            await wait_until(lambda: origin.targets == [b"/upload"])

            async def trickle() -> None:
                with contextlib.suppress(trio.BrokenResourceError):
                    while True:
                        await trio.sleep(50.0)
                        await stream.send_all(b"y")

            nursery.start_soon(trickle)
            with trio.fail_after(600):
                answer = await stream.receive_some(65536)
            nursery.cancel_scope.cancel()
        # After 60 s of grace, the floor (what came after the body started, at 1024 B/s);
        # the trickle alone would have gone on for ever.
        assert 60.0 <= trio.current_time() - started < 60.0 + 70_000 / 1024
        assert answer.startswith(b"HTTP/1.1 408 ")
        await proxy.settled()
        assert proxy.upstream_open == proxy.server.pool.open_count == 0
    assert [r.status for r in proxy.records] == [408]


async def test_a_client_that_never_reads_a_large_response_is_cut_after_client_send_s(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scripted_proxy(network=MemoryNetwork(capacity=4096)) as (proxy, _origin):
        async with proxy.open() as stream:
            started = trio.current_time()
            await stream.send_all(b"GET /big/10000000 HTTP/1.1\r\nHost: x\r\n\r\n")
            with trio.fail_after(600):
                await proxy.logged()
            assert 60.0 <= trio.current_time() - started < 61.0  # timeouts.client_send_s
        await proxy.settled()
        assert proxy.upstream_open == proxy.server.pool.open_count == 0  # discarded
    record = proxy.records[0]
    assert record.status == 200  # the head went out; then the connection was cut
    assert 0 < record.body_bytes_sent < 10_000


async def test_a_client_reading_a_large_response_too_slowly_is_cut_by_the_rate_floor(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """512 bytes every 30 s keeps the inactivity timeout at bay, not the 1 KiB/s floor."""
    async with scripted_proxy(network=MemoryNetwork(capacity=4096)) as (proxy, _origin):
        async with proxy.open() as stream:
            await stream.send_all(b"GET /big/10000000 HTTP/1.1\r\nHost: x\r\n\r\n")
            with trio.fail_after(600), contextlib.suppress(trio.BrokenResourceError):
                for _ in range(100):  # the slow reader
                    if not await stream.receive_some(512):
                        break
                    await trio.sleep(30.0)
        await proxy.settled()
        assert proxy.upstream_open == proxy.server.pool.open_count == 0
    record = proxy.records[0]
    # 60 s of grace (timeouts.client_send_s), then what was sent at 1024 B/s; the reads,
    # every 30 s, would have kept the inactivity timeout from ever firing.
    assert 60.0 + record.body_bytes_sent / 1024 <= record.duration_s < 90.0
