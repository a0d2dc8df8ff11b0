"""The access line's ``request_length`` (`AccessRecord.bytes_received`) for pipelined
requests: each request's own bytes (nginx's ``$request_length``), not whatever the read that
brought its head also brought of the next ones."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from ..memnet import scripted_proxy


@pytest.mark.xfail(
    strict=True,
    reason="predates this session: a request's bytes_received is the connection's count "
    "since the loop started on it, so the first of two pipelined requests read in one recv "
    "counts both (83) and the second 0; a fix must subtract what h11 still holds unparsed "
    "(trailing_data copies the buffer: a cost on the hot path, not a small change)",
)
async def test_each_pipelined_request_counts_its_own_bytes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    one = b"GET /small HTTP/1.1\r\nHost: a\r\n\r\n"
    two = b"GET /small HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    async with scripted_proxy() as (proxy, _origin):
        with trio.fail_after(30):
            await proxy.exchange_raw(one + two)
            await proxy.logged(2)
    assert [r.bytes_received for r in proxy.records] == [len(one), len(two)]
