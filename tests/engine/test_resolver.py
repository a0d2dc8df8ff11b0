"""The upstream name is re-resolved after its TTL, never cached forever; a failure is shared
by everyone waiting for it and remembered briefly.

A stand-in lookup (``Resolver(lookup=...)``) plays a DNS whose answer changes, on the autojump
clock. (Formerly e2e/test_resolver.py, behind trio's hostname-resolver hook; the one test
through the system resolver and a real origin is in e2e/test_upstream.py.)
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from trioproxy.core._errors import UpstreamConnectError, UpstreamTimeout
from trioproxy.engine._resolver import Resolver, SockAddr


class ChangingDNS:
    """A lookup whose answer changes: the n-th call gets the n-th answer (then the last)."""

    def __init__(self, *answers: str | None) -> None:
        self.answers = list(answers)  # None: the name does not resolve
        self.asked = 0

    async def __call__(self, host: str, port: int) -> list[SockAddr]:
        await trio.lowlevel.checkpoint()
        self.asked += 1
        answer = self.answers[min(self.asked, len(self.answers)) - 1]
        if answer is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, (answer, port))]


@asynccontextmanager
async def running(resolver: Resolver) -> AsyncIterator[Resolver]:
    """The resolver with its lookup task, as the pool runs it."""
    async with trio.open_nursery() as nursery:
        await nursery.start(resolver.run)
        yield resolver
        nursery.cancel_scope.cancel()


def deadline_in(seconds: float) -> float:
    return trio.current_time() + seconds


async def test_answer_is_reused_for_the_ttl_then_asked_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    dns = ChangingDNS("10.0.0.1", "10.0.0.2")
    async with running(Resolver("next-hop", 80, ttl_s=5, lookup=dns)) as resolver:
        assert [a for _, a in await resolver.resolve(deadline_in(9))] == [("10.0.0.1", 80)]
        await trio.sleep(4.9)
        assert [a for _, a in await resolver.resolve(deadline_in(9))] == [("10.0.0.1", 80)]
        assert dns.asked == 1
        await trio.sleep(0.2)
        assert [a for _, a in await resolver.resolve(deadline_in(9))] == [("10.0.0.2", 80)]
        assert dns.asked == 2


async def test_a_slow_lookup_delays_nobody_long_when_there_is_an_answer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """With a last good answer, a request waits for a slow lookup only briefly; the lookup
    goes on, and the next requests get its answer."""
    dns = SlowThenFastDNS()
    async with running(Resolver("next-hop", 80, ttl_s=1, lookup=dns)) as resolver:
        assert [a for _, a in await resolver.resolve(deadline_in(9))] == [("10.0.0.1", 80)]
        await trio.sleep(2)
        started = trio.current_time()
        assert [a for _, a in await resolver.resolve(deadline_in(9))] == [("10.0.0.1", 80)]
        assert trio.current_time() - started == 0.5
        await trio.sleep(5)
        assert [a for _, a in await resolver.resolve(deadline_in(9))] == [("10.0.0.2", 80)]


class SlowThenFastDNS(ChangingDNS):
    """The first answer at once; the second after 3 s."""

    def __init__(self) -> None:
        super().__init__("10.0.0.1", "10.0.0.2")

    async def __call__(self, host: str, port: int) -> list[SockAddr]:
        if self.asked:
            await trio.sleep(3)
        return await super().__call__(host, port)


async def test_a_lookup_that_never_answers_is_abandoned(
    autojump_clock: trio.testing.MockClock,
) -> None:
    dns = HangingDNS()
    async with running(
        Resolver("next-hop", 80, ttl_s=5, lookup_timeout_s=10, lookup=dns)
    ) as resolver:
        with pytest.raises(UpstreamTimeout):
            await resolver.resolve(deadline_in(3))
        with pytest.raises(UpstreamConnectError, match="no answer in 10 s"):
            await resolver.resolve(deadline_in(30))


class HangingDNS(ChangingDNS):
    async def __call__(self, host: str, port: int) -> list[SockAddr]:
        await trio.sleep_forever()


async def test_a_failure_is_remembered_for_the_negative_ttl(
    autojump_clock: trio.testing.MockClock,
) -> None:
    dns = ChangingDNS(None, "10.0.0.3")
    async with running(Resolver("next-hop", 80, ttl_s=5, negative_ttl_s=1, lookup=dns)) as resolver:
        with pytest.raises(UpstreamConnectError, match="cannot resolve next-hop"):
            await resolver.resolve(deadline_in(9))
        await trio.sleep(0.9)
        with pytest.raises(UpstreamConnectError):  # remembered: not asked again
            await resolver.resolve(deadline_in(9))
        assert dns.asked == 1
        await trio.sleep(0.2)
        assert [a for _, a in await resolver.resolve(deadline_in(9))] == [("10.0.0.3", 80)]


async def test_after_a_failure_the_last_good_answer_is_used(
    autojump_clock: trio.testing.MockClock,
) -> None:
    dns = ChangingDNS("10.0.0.5", None, None)
    async with running(Resolver("next-hop", 80, ttl_s=1, lookup=dns)) as resolver:
        assert [a for _, a in await resolver.resolve(deadline_in(9))] == [("10.0.0.5", 80)]
        await trio.sleep(2)
        assert [a for _, a in await resolver.resolve(deadline_in(9))] == [("10.0.0.5", 80)]
        assert dns.asked == 2


async def test_concurrent_lookups_ask_once(autojump_clock: trio.testing.MockClock) -> None:
    dns = ChangingDNS("10.0.0.4")
    async with running(Resolver("next-hop", 80, ttl_s=5, lookup=dns)) as resolver:
        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(resolver.resolve, deadline_in(9))
    assert dns.asked == 1


class SlowFailingDNS(ChangingDNS):
    """A resolver outage: every lookup takes its full timeout, then fails."""

    async def __call__(self, host: str, port: int) -> list[SockAddr]:
        self.asked += 1
        await trio.sleep(5)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")


async def test_an_outage_costs_concurrent_requests_one_lookup(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Six requests during an outage share the lookup in flight and its failure: all are
    answered 5 s in (not 5, 10, ... 30 s), and the next ones at once, from the cache."""
    dns = SlowFailingDNS()
    answered_at: list[float] = []
    started = trio.current_time()

    async def one(resolver: Resolver) -> None:
        with pytest.raises(UpstreamConnectError):
            await resolver.resolve(deadline_in(60))
        answered_at.append(trio.current_time() - started)

    async with running(Resolver("next-hop", 80, ttl_s=5, negative_ttl_s=1, lookup=dns)) as resolver:
        async with trio.open_nursery() as nursery:
            for _ in range(6):
                nursery.start_soon(one, resolver)
        await one(resolver)
    assert answered_at == [5.0] * 7
    assert dns.asked == 1


async def test_a_caller_waits_only_until_its_own_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    dns = SlowFailingDNS()
    async with running(Resolver("next-hop", 80, ttl_s=5, lookup=dns)) as resolver:
        started = trio.current_time()
        with pytest.raises(UpstreamTimeout):
            await resolver.resolve(deadline_in(2))
        assert trio.current_time() - started == 2
