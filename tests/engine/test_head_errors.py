"""A HEAD request the proxy cannot forward gets its error status, head only.

h11 refuses a body on the answer to a HEAD, and the error answer queued one: the answer was
never sent, and the client saw its connection close with no status at all (a health checker
using HEAD saw a dead proxy, not a 502 naming the upstream).
"""

from __future__ import annotations

import trio
import trio.testing

from ..memnet import memory_proxy


async def test_a_head_request_whose_upstream_is_down_gets_a_502_head(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with memory_proxy() as proxy:  # no origin listens: connection refused
        async with proxy.client() as client:
            with trio.fail_after(100):
                head = await client.request(b"HEAD", b"/")
                get = await client.request(b"GET", b"/")  # the connection goes on
    assert (head.status, head.body) == (502, b"")
    assert head.header(b"content-length") == b"16"  # what the GET's answer has
    assert (get.status, get.body) == (502, b"502 Bad Gateway\n")
    assert [(r.method, r.status, r.body_bytes_sent) for r in proxy.records] == [
        (b"HEAD", 502, 0),
        (b"GET", 502, 16),
    ]
