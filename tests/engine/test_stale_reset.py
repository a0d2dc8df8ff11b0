"""An upstream *reset* on a reused connection is judged by what was received on it.

A reused connection that the origin resets before any response byte arrived is the
keep-alive race (the origin dropped it as we reused it; an origin that closes with our
request unread sends a reset, not a FIN): the request is retried once on a fresh connection,
as after a clean EOF. Bytes *sent* say nothing here: the request always went out. Once a
response byte has arrived, a reset is a failed response (502), never retried.
"""

from __future__ import annotations

import trio
import trio.testing

from ..memnet import MemoryNetwork, MemoryStream, memory_origin, memory_proxy
from ..support import read_head

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def resetting_on_second_request(partial: bytes) -> tuple[list[int], object]:
    """An origin whose first connection answers once, then takes the next request, sends
    ``partial`` of a response and resets; later connections answer everything."""
    answered: list[int] = []

    async def handler(stream: MemoryStream) -> None:
        answered.append(0)
        first = len(answered) == 1
        while await read_head(stream):  # type: ignore[arg-type]
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
