"""The engine on the memory network: a request goes through, a slow origin times out."""

from __future__ import annotations

import trio
import trio.testing

from ..memnet import MemoryStream, memory_proxy
from ..support import make_settings, read_head

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


async def test_a_request_goes_through_and_the_connection_is_reused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    accepted = 0

    async def origin(stream: MemoryStream) -> None:
        nonlocal accepted
        accepted += 1
        while await read_head(stream):
            await stream.send_all(RESPONSE)

    async with memory_proxy(origin=origin) as proxy:
        async with proxy.client() as client:
            for _ in range(3):
                reply = await client.request(b"GET", b"/x")
                assert (reply.status, reply.body) == (200, b"ok")
    assert accepted == 1
    assert [r.status for r in proxy.records] == [200, 200, 200]
    assert proxy.records[0].peer == "198.51.100.7"


async def test_a_silent_origin_gets_a_504_after_the_response_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def silent(stream: MemoryStream) -> None:
        await trio.sleep_forever()

    settings = make_settings(timeouts__upstream_response_s=30.0)
    async with memory_proxy(settings, origin=silent) as proxy:
        async with proxy.client() as client:
            started = trio.current_time()
            reply = await client.request(b"GET", b"/")
            assert reply.status == 504
            assert trio.current_time() - started >= 30.0
