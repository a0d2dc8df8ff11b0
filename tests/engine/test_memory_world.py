"""trioproxy.testing's memory world: the real proxy and an origin in memory, on virtual time,
seeded, clients raw and httpx, and a block that leaves something behind told what."""

from __future__ import annotations

import time

import httpx
import pytest
import trio
import trio.testing

from trioproxy.testing import (
    ExchangeMatch,
    LeakError,
    MemoryStream,
    memory_world,
    seed_scheduler,
)
from trioproxy.testing._asgi import Receive, Scope, Send

from ..support import Client


async def slow_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers after the seconds its path names (/slow/120), else at once, with the path."""
    seconds = float(scope["path"].rpartition("/")[2] or 0) if "/slow/" in scope["path"] else 0
    await trio.sleep(seconds)
    body = scope["path"].encode()
    headers = [(b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def test_a_request_goes_through_the_real_proxy_to_the_app(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with memory_world() as world:
        async with world.open() as stream:
            reply = await Client(stream).request(b"GET", b"/hello?x=1")
        assert reply.status == 200 and reply.header(b"via") == b"1.1 trioproxy"
        echoed = reply.json()
        assert (echoed["method"], echoed["path"], echoed["query"]) == ("GET", "/hello", "x=1")
        assert world.access_log[0]["status"] == "200"
        world.journal.verify(ExchangeMatch(method="GET", path="/hello"), times=1)


async def test_httpx_runs_unchanged_and_its_timeouts_are_virtual(
    autojump_clock: trio.testing.MockClock,
) -> None:
    wall = time.monotonic()
    async with memory_world(slow_app, settings=None) as world:
        async with world.httpx_client(timeout=60.0) as client:
            fast = await client.post("/fast", content=b"x" * 100_000)
            assert (fast.status_code, fast.text) == (200, "/fast")
            started = trio.current_time()
            with pytest.raises(httpx.ReadTimeout):
                await client.get("/slow/120")
            assert trio.current_time() - started == pytest.approx(60.0)
    assert time.monotonic() - wall < 1.0  # a minute of the world's time in no time


async def test_a_connection_left_open_is_named_when_the_block_ends(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with pytest.raises(LeakError) as leaked:
        async with memory_world() as world:
            stream = world.open()
            await Client(stream).request(b"GET", b"/")
    assert str(leaked.value) == (
        "left behind by the memory world's block:\n"
        "  1 client connection(s) still open: close the streams world.open() gave, and the"
        " httpx clients"
    )


async def test_the_blocks_own_failure_is_not_hidden_by_the_leak_check(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with pytest.raises(ZeroDivisionError):
        async with memory_world() as world:
            world.open()
            1 / 0  # noqa: B018


async def test_a_stalled_origin_stream_handler_is_an_origin_too(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def mute(stream: MemoryStream) -> None:
        await trio.sleep_forever()

    async with memory_world(origin=mute) as world, world.open() as stream:
        started = trio.current_time()
        reply = await Client(stream).request(b"GET", b"/")
        assert reply.status == 504
        assert trio.current_time() - started == pytest.approx(120.0)  # upstream_response_s


async def _concurrent_run(seed: int) -> list[tuple[int, str, float, float, str]]:
    async with memory_world(slow_app, seed=seed) as world:
        t0 = trio.current_time()

        async def one(path: bytes) -> None:
            async with world.open() as stream:
                await Client(stream).request(b"GET", path)

        async with trio.open_nursery() as nursery:
            for n in range(12):
                nursery.start_soon(one, b"/slow/%d?n=%d" % (n % 3, n))
        return [
            (e.seq, e.target, e.start_s - t0, e.end_s - t0, e.request_id) for e in world.journal
        ]


async def test_the_same_seed_gives_the_same_journal(
    autojump_clock: trio.testing.MockClock,
) -> None:
    first = await _concurrent_run(seed=7)
    assert await _concurrent_run(seed=7) == first
    orders = {tuple(e[1] for e in await _concurrent_run(s)) for s in range(6)}
    assert len(orders) > 1  # the seed does choose: other seeds, other orders


async def test_virtual_time_without_a_mock_clock_says_how_to_get_one() -> None:
    with pytest.raises(RuntimeError, match=r"autojump_clock fixture, run with trioproxy\.testing"):
        async with memory_world():
            pass


def test_seeding_a_trio_it_does_not_know_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trio, "__version__", "0.99.0")
    with pytest.raises(RuntimeError, match=r"cannot seed trio 0.99.0's scheduler"):
        seed_scheduler(1)


async def test_a_world_in_real_time_needs_no_mock_clock() -> None:
    async with memory_world(autojump=False, seed=None) as world, world.open() as stream:
        assert (await Client(stream).request(b"GET", b"/")).status == 200
