"""Connections given back moments ago: a request that may be retried takes one without the
look for a dead connection (a syscall per request on a socket); one that may not be retried
still looks. Either way the client gets its answer (the stale-connection retry: `test_retry`)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trioproxy.engine import _pool

from ..memnet import scripted_proxy, wait_until


@pytest.mark.parametrize(
    ("method", "body", "retries"),
    [
        pytest.param(b"GET", b"", 1, id="get-takes-it-unlooked-and-retries"),
        pytest.param(b"POST", b"x", 0, id="post-looks-first"),
    ],
)
async def test_a_connection_that_died_moments_after_its_answer(
    autojump_clock: trio.testing.MockClock, method: bytes, body: bytes, retries: int
) -> None:
    async with scripted_proxy() as (proxy, origin):
        async with proxy.client() as client:
            # /close: the origin answers (keep-alive by its headers), then hangs up.
            assert (await client.request(b"GET", b"/close")).status == 200
            await wait_until(lambda: origin.open == 0)
            assert trio.current_time() - proxy.server.pool._idle[0].idle_since < _pool._FRESH_S
            assert (await client.request(method, b"/small", body=body)).status == 200
    assert origin.accepted == 2
    assert proxy.server.ctx.stats.retries == retries


async def test_a_connection_idle_longer_is_looked_at_even_for_a_get(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scripted_proxy() as (proxy, origin):
        async with proxy.client() as client:
            assert (await client.request(b"GET", b"/close")).status == 200
            await wait_until(lambda: origin.open == 0)
            await trio.sleep(_pool._FRESH_S)
            assert (await client.request(b"GET", b"/small")).status == 200
    assert origin.accepted == 2
    assert proxy.server.ctx.stats.retries == 0  # seen dead before use: no failed attempt
