"""The rate floors (``limits.min_body_rate_bytes_per_s``, ``min_send_rate_bytes_per_s``): a
client that trickles its body, or reads its response, just inside each inactivity timeout
is cut off all the same; and a floor ends with its request. On the autojump clock: the
trickles are virtual, so no margin depends on the machine.

(From the former e2e/test_abuse.py, where they ran on loopback with wall-clock sleeps. The
floors on a streamed body and a slow reader are also in `test_exchange`.)
"""

from __future__ import annotations

import contextlib

import trio
import trio.testing

from ..memnet import MemoryStream, ScriptedOrigin, memory_proxy, wait_until
from ..support import make_settings, read_head

BODY_FLOOR = make_settings(timeouts__client_body_s=0.3, limits__min_body_rate_bytes_per_s=1_000_000)


async def trickle(stream: MemoryStream) -> None:
    """A byte just inside each inactivity timeout, until the proxy closes."""
    with contextlib.suppress(trio.BrokenResourceError):
        while True:
            await stream.send_all(b"y")
            await trio.sleep(0.1)


async def test_a_body_larger_than_the_buffer_streams_and_a_trickle_is_cut_off(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Past the buffer a body streams upstream (holding one connection, which is nobody
    else's); a client that then trickles falls below the rate floor: 408, connection gone."""
    async with memory_proxy(BODY_FLOOR, origin=ScriptedOrigin()) as proxy:
        async with proxy.open() as stream:
            await stream.send_all(
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"y" * 70000
            )
            await wait_until(lambda: proxy.server.pool.open_count == 1)
            async with proxy.client() as client:  # meanwhile, others are served
                assert (await client.request(b"GET", b"/small")).status == 200
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trickle, stream)
                with trio.fail_after(10):
                    answer = await stream.receive_some(65536)
                nursery.cancel_scope.cancel()
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert proxy.records[-1].status == 408
        await wait_until(lambda: proxy.server.pool.open_count <= 1)
        assert proxy.server.pool.idle_count == proxy.server.pool.open_count


async def test_a_slow_body_inside_the_buffer_meets_the_rate_floor_too(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with memory_proxy(BODY_FLOOR, origin=ScriptedOrigin()) as proxy:
        async with proxy.open() as stream, trio.open_nursery() as nursery:
            await stream.send_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
            nursery.start_soon(trickle, stream)
            with trio.fail_after(10):
                answer = await stream.receive_some(65536)
            nursery.cancel_scope.cancel()
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert proxy.server.pool.open_count == 0  # it never got near the origin


async def test_a_client_that_never_reads_a_large_response_is_cut_off_by_the_rate_floor(
    autojump_clock: trio.testing.MockClock,
) -> None:
    settings = make_settings(
        timeouts__client_send_s=0.2, limits__min_send_rate_bytes_per_s=1_000_000
    )
    async with memory_proxy(settings, origin=ScriptedOrigin()) as proxy:
        async with proxy.open() as stream:
            await stream.send_all(b"GET /big/50000000 HTTP/1.1\r\nHost: x\r\n\r\n")
            with trio.fail_after(30):
                await proxy.logged()
        assert proxy.records[0].status == 200  # the head went out; then it was cut off
        assert proxy.records[0].body_bytes_sent < 50_000_000
        assert proxy.server.pool.open_count == 0  # the upstream connection was discarded


async def test_a_rate_floor_ends_with_its_request(autojump_clock: trio.testing.MockClock) -> None:
    """A request that fails after its body went upstream (here: the origin hangs up without
    an answer, a 502) leaves the connection open; its body's rate floor must not follow the
    connection into its idle wait (it would cut it with a 408)."""
    requests = 0

    async def hangs_up_once(stream: MemoryStream) -> None:
        nonlocal requests
        head = await read_head(stream)
        requests += 1
        if requests == 1:
            while head.count(b"x") < 100:  # the whole body, then no answer
                head += await stream.receive_some(65536)
            return
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    settings = make_settings(
        timeouts__client_body_s=0.2, limits__min_body_rate_bytes_per_s=1_000_000
    )
    async with memory_proxy(settings, origin=hangs_up_once) as proxy:
        async with proxy.client() as client:
            assert (await client.request(b"POST", b"/", body=b"x" * 100)).status == 502
            await trio.sleep(0.5)  # idle, longer than the floor's grace
            assert (await client.request(b"GET", b"/")).status == 200
