"""The pool's note of an address known to be in the resolver's answer
(`UpstreamConnection.answer_until`): until that answer expires it cannot change (no lookup
starts before), so the pool does not ask the resolver again; from then on it asks at every
release and reuse until a new answer comes, and a connection whose address left it goes.

Whether the pool asked is seen by changing the answer behind the resolver's back (only a test
can: `Resolver._current`), which only a question notices."""

from __future__ import annotations

import math

import pytest
import trio
import trio.testing

from trioproxy.engine._pool import PoolLimits
from trioproxy.engine._resolver import Resolver, SockAddr

from .test_pool import MovingAnswer, _finish_exchange, running_pool

OLD, NEW = ("192.0.2.81", 80), ("192.0.2.82", 80)


async def test_an_address_noted_current_is_not_asked_about_until_its_answer_expires(
    autojump_clock: trio.testing.MockClock,
) -> None:
    dns = MovingAnswer(OLD)
    next_hop = Resolver("next-hop", 80, ttl_s=10, lookup=dns)
    async with running_pool(PoolLimits(idle_timeout_s=60), next_hop, OLD, NEW) as pool:
        conn, reused, _ = await pool.acquire()
        assert not reused and conn.answer_until == -math.inf  # nothing known yet
        _finish_exchange(conn)
        pool.release(conn)
        assert conn.answer_until == next_hop.expires_at
        dns.address = NEW
        next_hop._current = frozenset([NEW])  # behind its back: only a question sees it
        for _ in range(3):
            await trio.sleep(2)
            again, reused, _ = await pool.acquire()
            assert reused and again is conn  # noted current: not asked
            _finish_exchange(again)
            pool.release(again)
        await trio.sleep(5)  # past the answer's expiry: asked, and it says no
        fresh, reused, _ = await pool.acquire()
        assert not reused and conn.closed and fresh.address.startswith(NEW[0])
        pool.discard(fresh)


@pytest.mark.parametrize("failing", [False, True], ids=["lookup-slow", "lookup-failed"])
async def test_an_expired_answer_not_yet_replaced_is_asked_about_at_every_release(
    autojump_clock: trio.testing.MockClock, failing: bool
) -> None:
    answered = MovingAnswer(OLD)
    calls = 0

    async def lookup(host: str, port: int) -> list[SockAddr]:
        nonlocal calls
        calls += 1
        if calls == 1:
            return await answered(host, port)
        if failing:
            raise OSError("resolver down")
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    next_hop = Resolver("next-hop", 80, ttl_s=1, lookup=lookup)
    async with running_pool(PoolLimits(idle_timeout_s=60), next_hop, OLD) as pool:
        conn, _, _ = await pool.acquire()
        await trio.sleep(2)  # the answer expired; no new one comes
        for _ in range(3):
            _finish_exchange(conn)
            pool.release(conn)  # the old answer still holds it: kept, but not noted
            assert pool.idle_count == 1 and conn.answer_until <= trio.current_time()
            conn, reused, _ = await pool.acquire()
            assert reused
            await trio.testing.wait_all_tasks_blocked()
        next_hop._current = frozenset([NEW])  # behind its back
        _finish_exchange(conn)
        pool.release(conn)  # asked: gone
        assert conn.closed and pool.open_count == 0
