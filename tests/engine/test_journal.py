"""The journal on the memory network: exchanges recorded as they end, waited for without
polling (virtual time passes only for the deadline), and nothing kept when it is off."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from trioproxy.core._journal import ExchangeMatch, VerificationError
from trioproxy.engine._journal import LiveJournal

from ..memnet import MemoryProxy, scripted_proxy
from ..support import make_settings

JOURNAL = make_settings(admin__journal_size=3)


@asynccontextmanager
async def journaled() -> AsyncIterator[tuple[MemoryProxy, LiveJournal]]:
    """The usual proxy and origin, with a journal of 3 entries: the proxy and its journal."""
    async with scripted_proxy(JOURNAL) as (proxy, _origin):
        journal = proxy.server.journal
        assert journal is not None
        yield proxy, journal


async def test_each_exchange_is_recorded_when_it_ends(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with journaled() as (proxy, journal):
        async with proxy.client() as client:
            started = trio.current_time()
            await client.request(b"GET", b"/small?x=1")
            await client.request(b"POST", b"/small", body=b"abc")
        first, second = journal
        assert (first.seq, first.method, first.target, first.path, first.status) == (
            1,
            "GET",
            "/small?x=1",
            "/small",
            200,
        )
        assert first.start_s == pytest.approx(started) and first.end_s >= first.start_s
        assert first.upstream_status == 200 and first.request_id
        assert (second.method, second.bytes_received > 3) == ("POST", True)
        journal.verify(ExchangeMatch(method="POST", path="/small"), times=1)


async def test_wait_for_returns_when_the_count_is_reached_and_no_sooner(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with journaled() as (proxy, journal):

        async def requests() -> None:
            async with proxy.client() as client:
                for delay in (1, 2, 3):
                    await client.request(b"GET", b"/slow/%d" % delay)

        async with trio.open_nursery() as nursery:
            started = trio.current_time()
            nursery.start_soon(requests)
            found = await journal.wait_for(ExchangeMatch(path_prefix="/slow/"), count=2)
            assert [e.path for e in found] == ["/slow/1", "/slow/2"]
            assert trio.current_time() - started == pytest.approx(3.0)  # not a moment later
        # Those already there count: this returns at once.
        assert len(await journal.wait_for(ExchangeMatch(path="/slow/3"), timeout_s=0)) == 1


async def test_wait_for_gives_up_at_its_deadline_with_the_near_misses(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with journaled() as (proxy, journal):
        async with proxy.client() as client:
            await client.request(b"GET", b"/small")
        started = trio.current_time()
        with pytest.raises(VerificationError) as failed:
            await journal.wait_for(ExchangeMatch(method="DELETE", path="/small"), timeout_s=30)
        assert trio.current_time() - started == pytest.approx(30.0)
        assert str(failed.value) == (
            "waited 30s for 1 exchange(s) matching method='DELETE', path='/small', found 0\n"
            "closest exchanges that did not match:\n"
            "  #1 GET /small -> 200: method is GET, not DELETE"
        )
        assert not journal._waiters  # the waiter is gone with its wait


async def test_without_a_journal_size_nothing_is_kept(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scripted_proxy() as (proxy, _origin):
        assert proxy.server.journal is None
        # The access-log sink is the caller's own: no wrapper on the hot path.
        assert proxy.server.ctx.log_access is proxy.log


async def test_an_entry_shows_the_heads_as_received_forwarded_and_sent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with journaled() as (proxy, journal):
        async with proxy.client() as client:
            await client.request(b"GET", b"/slow/1", [(b"X-Mine", b"a")])
            await client.request(b"GET", b"/small")
        first, second = journal
        assert first.header("x-mine") == "a" and ("X-Mine", "a") in first.request_headers
        assert first.forwarded_target == "/slow/1"
        assert first.forwarded_headers is not None
        forwarded = {name.lower() for name, _ in first.forwarded_headers}
        assert {"x-forwarded-for", "via", "x-request-id"} <= forwarded
        assert first.upstream_headers is not None and first.response_headers is not None
        assert ("Via", "1.1 trioproxy") in first.response_headers
        assert first.first_byte_s == first.start_s + 1.0  # the origin took a second
        assert (first.upstream_reused, second.upstream_reused) == (False, True)


async def test_without_a_journal_no_exchange_collects_notes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scripted_proxy() as (proxy, _origin):
        async with proxy.client() as client:
            await client.request(b"GET", b"/small")
        assert proxy.records[0].notes is None
