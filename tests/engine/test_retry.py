"""The stale-connection retry, where it must not happen: a request is retried once on a
fresh connection only when its reused one died before any response byte, and it is
idempotent with no body (nginx's and Varnish's rule). The cases where it does retry are in
`test_exchange`.

From the former e2e/test_promises.py (README promises that mutation testing showed no test
pinned down), on loopback there.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

from ..memnet import MemoryNetwork, MemoryStream, memory_origin, memory_proxy
from ..support import read_head

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


async def test_a_bodyless_post_is_never_retried_on_a_stale_connection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """`POST /logout` with no body: not idempotent, so a reused connection that dies before
    any response byte is a 502, never a second POST (the retry rule: idempotent AND no body)."""
    seen: list[bytes] = []

    async def stale_after_first(stream: MemoryStream) -> None:
        seen.append(await read_head(stream))
        await stream.send_all(OK)
        seen.append(await read_head(stream))  # the POST arrives, then the origin hangs up

    async with memory_proxy(origin=stale_after_first) as proxy:
        async with proxy.client() as client:
            assert (await client.request(b"GET", b"/")).status == 200
            reply = await client.request(b"POST", b"/logout")
    assert reply.status == 502
    assert [head.split(b" ", 1)[0] for head in seen] == [b"GET", b"POST"]  # one POST only
    assert proxy.server.ctx.stats.retries == 0


async def _fin(stream: MemoryStream) -> None:
    await stream.aclose()


async def _reset(stream: MemoryStream) -> None:
    stream.reset()
    await trio.lowlevel.checkpoint()


@pytest.mark.parametrize("hang_up", [_reset, _fin], ids=["reset", "fin"])
async def test_no_retry_once_the_origin_sent_part_of_a_response(
    autojump_clock: trio.testing.MockClock,
    hang_up: Callable[[MemoryStream], Awaitable[None]],
) -> None:
    """A GET on a reused connection whose origin sends part of a response head, then resets
    or closes: bytes came back, so the request may have been acted on; 502, no retry."""
    connections: list[int] = []

    async def partial_then_hang_up(stream: MemoryStream) -> None:
        connections.append(1)
        await read_head(stream)
        await stream.send_all(OK)
        await read_head(stream)
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Le")
        await hang_up(stream)

    async with memory_proxy(origin=partial_then_hang_up) as proxy:
        async with proxy.client() as client:
            assert (await client.request(b"GET", b"/")).status == 200
            reply = await client.request(b"GET", b"/")
    assert reply.status == 502
    assert len(connections) == 1
    assert proxy.server.ctx.stats.retries == 0


# From the former test_stale_reset.py: An upstream *reset* on a reused connection is judged by
# what was received on it.

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def resetting_on_second_request(partial: bytes) -> tuple[list[int], object]:
    """An origin whose first connection answers once, then takes the next request, sends
    ``partial`` of a response and resets; later connections answer everything."""
    answered: list[int] = []

    async def handler(stream: MemoryStream) -> None:
        answered.append(0)
        first = len(answered) == 1
        while await read_head(stream):
            if first and answered[0]:
                if partial:
                    await stream.send_all(partial)
                await trio.testing.wait_all_tasks_blocked()  # the proxy has read it
                stream.reset()
                return
            answered[-1] += 1
            await stream.send_all(OK)

    return answered, handler


async def test_a_reset_before_any_response_byte_on_a_reused_connection_is_retried(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    answered, handler = resetting_on_second_request(b"")
    async with memory_origin(network, handler), memory_proxy(network=network) as proxy:  # type: ignore[arg-type]
        async with proxy.client() as client:
            assert (await client.request(b"GET", b"/")).status == 200
            assert (await client.request(b"GET", b"/")).status == 200
    assert answered == [1, 1]  # the second answer came from a fresh connection
    assert proxy.server.ctx.stats.retries == 1
    assert [r.status for r in proxy.records] == [200, 200]


async def test_a_reset_after_a_response_byte_is_a_502_and_not_retried(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    answered, handler = resetting_on_second_request(b"HTTP/1.1 200 OK\r\n")
    async with memory_origin(network, handler), memory_proxy(network=network) as proxy:  # type: ignore[arg-type]
        async with proxy.client() as client:
            assert (await client.request(b"GET", b"/")).status == 200
            assert (await client.request(b"GET", b"/")).status == 502
    assert answered == [1]
    assert proxy.server.ctx.stats.retries == 0
