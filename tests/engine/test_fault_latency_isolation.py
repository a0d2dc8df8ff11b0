"""A latency toward the client before the response head holds no upstream connection while it
waits, when the response fits ``limits.response_buffer_bytes``: it is read whole, the
connection goes back to the pool, and the delayed answer goes out after the delay. A larger
response holds its connection while it waits, as any streamed response holds it."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from trioproxy.config._config import settings_from_bytes
from trioproxy.testing import ExchangeMatch, memory_world

from ..support import Client
from .test_faults import Origin

# Two upstream connections in all, and a wait for one far shorter than the delay.
TWO_UPSTREAM = b"[upstream]\nmax_connections = 2\n[timeouts]\npool_wait_s = 3\n"
SLOW: dict[str, Any] = {
    "kind": "latency",
    "direction": "client",
    "delay_s": 60,
    "match": {"path_prefix": "/bytes/"},
}


async def test_delayed_responses_leave_the_upstream_connections_to_the_others(
    autojump_clock: trio.testing.MockClock,
) -> None:
    settings = settings_from_bytes(TWO_UPSTREAM, file="trioproxy.toml")
    async with memory_world(origin=Origin(), settings=settings) as world, world.fault(**SLOW):
        async with world.open() as a, world.open() as b, world.open() as other:
            started = trio.current_time()
            async with trio.open_nursery() as nursery:
                delayed = [
                    Client(a).request_soon(nursery, b"GET", b"/bytes/3000"),
                    Client(b).request_soon(nursery, b"GET", b"/bytes/3000"),
                ]
                await trio.sleep(1)  # both delays hold their exchanges by now
                asked = trio.current_time()
                reply = await Client(other).request(b"GET", b"/")
                assert (reply.status, trio.current_time() - asked) == (200, 0.0)
            # The delayed answers still come, whole, after their delay.
            assert trio.current_time() - started == 60.0
            for (slow,) in delayed:
                assert (slow.status, slow.body) == (200, b"x" * 3000)
        entries = world.journal.verify(ExchangeMatch(path_prefix="/bytes/"), times=2)
        assert {entry.status for entry in entries} == {200}


async def test_a_client_leaving_during_the_delay_is_logged_as_given_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    settings = settings_from_bytes(TWO_UPSTREAM, file="trioproxy.toml")
    async with memory_world(origin=Origin(), settings=settings) as world, world.fault(**SLOW):
        async with world.open() as gone:
            await gone.send_all(b"GET /bytes/2 HTTP/1.1\r\nHost: x\r\n\r\n")
            await trio.sleep(1)
        (entry,) = await world.journal.wait_for(ExchangeMatch(path="/bytes/2"))
        assert entry.status == 444  # nothing went out
        async with world.open() as a, world.open() as b:  # both connections still usable
            assert (await Client(a).request(b"GET", b"/")).status == 200
            assert (await Client(b).request(b"GET", b"/")).status == 200


async def test_a_response_too_large_to_buffer_is_delayed_whole(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = TWO_UPSTREAM + b"[limits]\nresponse_buffer_bytes = 1024\n"
    settings = settings_from_bytes(config, file="trioproxy.toml")
    async with memory_world(origin=Origin(), settings=settings) as world, world.fault(**SLOW):
        async with world.open() as stream:
            started = trio.current_time()
            reply = await Client(stream).request(b"GET", b"/bytes/200000")
            assert (reply.status, len(reply.body)) == (200, 200_000)
            assert trio.current_time() - started == 60.0


ONE_UPSTREAM = b"[upstream]\nmax_connections = 1\n[timeouts]\npool_wait_s = 3\n"
CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
TO_EOF = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nabc"


@pytest.mark.parametrize("answer", [CHUNKED, TO_EOF], ids=["chunked", "to_eof"])
async def test_bodies_of_every_framing_are_read_whole_before_the_delay(
    autojump_clock: trio.testing.MockClock, answer: bytes
) -> None:
    async def origin(stream: trio.abc.HalfCloseableStream) -> None:
        received = b""
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return
            received += data
            while b"\r\n\r\n" in received:  # (GET requests: no body)
                _, _, received = received.partition(b"\r\n\r\n")
                await stream.send_all(answer)
                if answer is TO_EOF:
                    await stream.aclose()
                    return

    settings = settings_from_bytes(ONE_UPSTREAM, file="trioproxy.toml")
    async with memory_world(origin=origin, settings=settings) as world, world.fault(**SLOW):
        async with world.open() as delayed, world.open() as other:
            async with trio.open_nursery() as nursery:
                (slow,) = [Client(delayed).request_soon(nursery, b"GET", b"/bytes/3")]
                await trio.sleep(1)
                asked = trio.current_time()
                reply = await Client(other).request(b"GET", b"/")
                assert (reply.status, reply.body, trio.current_time() - asked) == (200, b"abc", 0)
            assert (slow[0].status, slow[0].body) == (200, b"abc")
