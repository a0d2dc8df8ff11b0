"""The common-head fast path (`whole_request_head`, `whole_response_head`) through the real
proxy on the memory network, where it frames what else came in the same read: a pipelined
request after a head it vouched for is judged in full on its own (a smuggling spelling
still gets its 400, and never reaches the origin), and a 1xx vouched for at once is
followed by the final response read by the reader."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from ..memnet import MemoryProxy, memory_proxy
from ..support import answering, parse_responses
from .test_strict import CountingOrigin

FIRST = b"GET /first HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 0\r\n\r\n"
# Second requests, each in the same send as FIRST: a strict parser refuses them.
SMUGGLED = [
    b"GET /second HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
    b"POST /second HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 3\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"GET /second HTTP/1.1\nHost: shop.test\n\n",
    b"GET /second HTTP/1.1\r\nHost: shop.test\r\nContent-Length : 1\r\n\r\nx",
    b"GET /second HTTP/1.1\r\nHost: shop.test\r\nContent-Length: +1\r\n\r\nx",
    b"GET /second HTTP/1.1\r\nHost: shop.test\r\nHost: other.test\r\n\r\n",
    b"GET /second HTTP/1.1\r\nHost: shop.test\r\nX: a\x00b\r\n\r\n",
]


async def _statuses(proxy: MemoryProxy, payload: bytes) -> list[int]:
    with trio.fail_after(10):
        data = await proxy.exchange_raw(payload)
    return [reply.status for reply in parse_responses(data, eof=False)]


@pytest.mark.parametrize("second", SMUGGLED)
async def test_a_request_pipelined_after_a_vouched_head_is_judged_in_full(
    autojump_clock: trio.testing.MockClock, second: bytes
) -> None:
    seen = CountingOrigin()
    async with memory_proxy(origin=seen) as proxy:
        assert await _statuses(proxy, FIRST + second) == [200, 400]
    assert [request.target for request, _ in seen.requests] == [b"/first"]


async def test_pipelined_vouched_heads_are_each_answered(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seen = CountingOrigin()
    last = b"GET /third HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n"
    async with memory_proxy(origin=seen) as proxy:
        assert await _statuses(proxy, FIRST + FIRST.replace(b"first", b"second") + last) == [
            200,
            200,
            200,
        ]
    assert [r.target for r, _ in seen.requests] == [b"/first", b"/second", b"/third"]


@pytest.mark.parametrize(
    ("final", "status"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 200),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok", 502),
        (b"HTTP/1.1 204 No Content\r\nContent-Length: 2\r\n\r\nok", 502),
        (b"HTTP/1.1 200 OK\nContent-Length: 2\r\n\r\nok", 502),
    ],
)
async def test_the_final_response_after_a_vouched_1xx_is_judged_in_full(
    autojump_clock: trio.testing.MockClock, final: bytes, status: int
) -> None:
    early = b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"  # in the same send as ``final``
    async with memory_proxy(origin=answering(early + final)) as proxy:
        async with proxy.client() as client:
            with trio.fail_after(10):
                reply = await client.request(b"GET", b"/")
    assert reply.status == status
    assert [info.status_code for info in reply.informational] == [103]


@pytest.mark.parametrize(
    ("response", "status"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 200),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", 200),
        (b"HTTP/1.1 204 No Content\r\nContent-Length: 2\r\n\r\nok", 502),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\nok", 502),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX: a\rb\r\n\r\nok", 502),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n\r\nsplit", 200),
    ],
)
async def test_a_response_in_the_first_bytes_is_answered_as_the_full_check_would(
    autojump_clock: trio.testing.MockClock, response: bytes, status: int
) -> None:
    async with memory_proxy(origin=answering(response)) as proxy:
        async with proxy.client() as client:
            with trio.fail_after(10):
                reply = await client.request(b"GET", b"/")
    assert reply.status == status
    if status == 200:
        assert reply.body == b"ok"  # (and nothing of what followed it)
