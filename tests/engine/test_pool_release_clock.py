"""A connection back from an exchange is idle since the exchange's own reading of the clock
(the one that ended its upstream duration): no second reading for the pool."""

from __future__ import annotations

import trio
import trio.testing

from trioproxy.engine._pool import PoolLimits

from .test_pool import _finish_exchange, resolver, running_pool


async def test_a_released_connection_is_idle_since_the_reading_it_came_with(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running_pool(PoolLimits(idle_timeout_s=4.0), resolver(ttl_s=5)) as pool:
        conn, _, _ = await pool.acquire()
        _finish_exchange(conn)
        ended = trio.current_time() - 1.0  # the exchange read the clock a second ago
        pool.release(conn, ended)
        assert pool.idle_count == 1
        assert conn.idle_since == ended
        await trio.sleep(3.5)  # its idle expiry counts from that reading: expired now
        _, reused, _ = await pool.acquire()
        assert not reused


async def test_a_released_connection_without_a_reading_is_idle_from_now(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running_pool(PoolLimits(idle_timeout_s=4.0), resolver(ttl_s=5)) as pool:
        conn, _, _ = await pool.acquire()
        _finish_exchange(conn)
        pool.release(conn)
        assert conn.idle_since == trio.current_time()
