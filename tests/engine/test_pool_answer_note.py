"""The pool's note of an address known to be in the resolver's answer
(`UpstreamConnection.answer_until`): until that answer expires it cannot change (no lookup
starts before), so the pool does not ask the resolver again; from then on it asks at every
release and reuse until a new answer comes, and a connection whose address left it goes."""

from __future__ import annotations

import math

import pytest
import trio
import trio.testing

from trioproxy.engine._pool import PoolLimits
from trioproxy.engine._resolver import Resolver, SockAddr

from .test_pool import MovingAnswer, _finish_exchange, running_pool


class CountingResolver(Resolver):
    """A resolver that counts how often the pool asks whether an address is current."""

    asked = 0

    def still_current(self, sockaddr: object, now: float) -> bool:
        self.asked += 1
        return super().still_current(sockaddr, now)


async def test_an_address_noted_current_is_not_asked_about_until_its_answer_expires(
    autojump_clock: trio.testing.MockClock,
) -> None:
    old, new = ("192.0.2.81", 80), ("192.0.2.82", 80)
    dns = MovingAnswer(old)
    next_hop = CountingResolver("next-hop", 80, ttl_s=10, lookup=dns)
    async with running_pool(PoolLimits(idle_timeout_s=60), next_hop, old, new) as pool:
        conn, reused, _ = await pool.acquire()
        assert not reused and conn.answer_until == -math.inf  # nothing known yet
        _finish_exchange(conn)
        pool.release(conn)
        assert next_hop.asked == 1 and conn.answer_until == next_hop.expires_at
        dns.address = new  # next-hop moves: nobody can know before the answer expires
        for _ in range(3):
            await trio.sleep(2)
            again, reused, _ = await pool.acquire()
            assert reused and again is conn
            _finish_exchange(again)
            pool.release(again)
        assert next_hop.asked == 1  # within the answer's TTL: noted, not asked
        await trio.sleep(5)  # past it
        again, reused, _ = await pool.acquire()
        assert reused and again is conn and next_hop.asked == 2  # asked, and a lookup started
        await trio.testing.wait_all_tasks_blocked()  # the new answer is in
        _finish_exchange(again)
        pool.release(again)
        assert next_hop.asked == 3 and conn.closed and pool.open_count == 0


@pytest.mark.parametrize("failing", [False, True], ids=["lookup-slow", "lookup-failed"])
async def test_an_expired_answer_not_yet_replaced_is_asked_about_at_every_release(
    autojump_clock: trio.testing.MockClock, failing: bool
) -> None:
    address = ("192.0.2.81", 80)
    answered = MovingAnswer(address)
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

    next_hop = CountingResolver("next-hop", 80, ttl_s=1, lookup=lookup)
    async with running_pool(PoolLimits(idle_timeout_s=60), next_hop, address) as pool:
        conn, _, _ = await pool.acquire()
        await trio.sleep(2)  # the answer expired
        for round_ in range(3):
            _finish_exchange(conn)
            pool.release(conn)  # the old answer still holds it: kept, but not noted
            assert next_hop.asked == 2 * round_ + 1
            assert conn.answer_until <= trio.current_time() and pool.idle_count == 1
            conn, reused, _ = await pool.acquire()
            assert reused and next_hop.asked == 2 * round_ + 2
            await trio.testing.wait_all_tasks_blocked()
        pool.discard(conn)
