"""`UpstreamPool.reuse`, `acquire`'s usual case with no coroutine made (the exchange asks it
first): the most recently used idle connection fit for reuse, counted as reused; None when
there is none, with nothing opened, and no checkpoint either way."""

from __future__ import annotations

import trio
import trio.testing

from trioproxy.engine._pool import PoolLimits

from .test_pool import _finish_exchange, resolver, running_pool


async def test_reuse_takes_the_most_recently_used_fit_connection_or_none(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running_pool(PoolLimits(idle_timeout_s=60, max_age_s=30), resolver(60)) as pool:
        assert pool.reuse() is None and pool.open_count == 0  # nothing idle: nothing opened
        older, _, _ = await pool.acquire()
        newer, _, _ = await pool.acquire()
        for conn in (older, newer):
            _finish_exchange(conn)
            pool.release(conn)
        with trio.testing.assert_no_checkpoints():
            taken = pool.reuse()
        assert taken is newer and taken.uses == 2 and pool.stats.reused == 1
        assert pool.idle_count == 1 and pool.open_count == 2
        await trio.sleep(31)  # `older` is past its maximum age
        assert pool.reuse(trio.current_time()) is None
        assert older.closed and pool.open_count == 1 and pool.stats.reused == 1
        pool.discard(taken)
