"""The exchange reads the usual response head (there at once, whole, plainly valid, final)
inline, without `read_response_head`; what else the first read brings (a 1xx, part of a head,
the end of the connection) `read_response_head` carries on from, as if it had read it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio
import trio.testing

from trioproxy.engine._memory import MemoryNetwork

from ..memnet import memory_proxy

REQUEST_END = b"\r\n\r\n"


def origin_sending(*pieces: bytes) -> Callable[[trio.abc.HalfCloseableStream], Awaitable[None]]:
    """An origin answering the one request on each connection with ``pieces``, written one
    by one with a pause between them (each arrives as its own read); the first as soon as
    the connection opens, before the request is read: on a network whose pipes hold less
    than the proxy's request head (`answer`), it is there when the proxy first reads."""

    async def serve(stream: trio.abc.HalfCloseableStream) -> None:
        await stream.send_all(pieces[0])
        received = b""
        while REQUEST_END not in received:
            received += await stream.receive_some(65536)
        for piece in pieces[1:]:
            await trio.sleep(0.01)
            await stream.send_all(piece)
        await trio.sleep(1)  # (keep-alive: the proxy reads no end of file)

    return serve


async def answer(*pieces: bytes) -> tuple[int, bytes, list[int]]:
    network = MemoryNetwork(capacity=120)  # (the first piece fits, the request head does not)
    proxy_at = memory_proxy(network=network, origin=origin_sending(*pieces))
    async with proxy_at as proxy, proxy.client() as client:
        reply = await client.request(b"GET", b"/x")
        await proxy.logged()
        return reply.status, reply.body, [r.status for r in proxy.records]


async def test_the_usual_head_in_the_first_read_is_answered(
    autojump_clock: trio.testing.MockClock,
) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    assert await answer(head) == (200, b"ok", [200])


async def test_a_1xx_in_the_first_read_is_relayed_and_the_final_head_read_after_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    early = b"HTTP/1.1 103 Early Hints\r\n\r\n"
    final = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    assert await answer(early + final) == (200, b"ok", [200])
    assert await answer(early, final) == (200, b"ok", [200])


async def test_a_head_the_first_read_brings_only_part_of_is_read_to_its_end(
    autojump_clock: trio.testing.MockClock,
) -> None:
    pieces = (b"HTTP/1.1 200 OK\r\nConte", b"nt-Length: 2\r\n\r\nok")
    assert await answer(*pieces) == (200, b"ok", [200])
