"""The cancellation sweeps of test_mem_cancellation, with hooks on every exchange: hooks that
await, raise, time out and edit, at the request, the response head and the access line, and a
lifespan task. Cut at every few scheduler steps (clients reset, the server cancelled), nothing
is left behind: no connection, no task, one access record per request, no internal error."""

from __future__ import annotations

import dataclasses

import pytest
import trio
import trio.testing

from trioproxy.core._rulemodel import HookAction, Match, Rule, RuleSet
from trioproxy.hooks import Exchange, ResponseHead

from ..memnet import (
    MemoryNetwork,
    ScriptedOrigin,
    counting_steps,
    memory_origin,
    memory_proxy,
)
from .test_cancellation import (
    CANCEL_SETTINGS,
    exchanges,
    run_with_clients_reset,
    run_with_server_cancelled,
    sweep_over,
)


class Awaits:
    """Every hook point awaits (a checkpoint where a cancellation can land)."""

    def __init__(self) -> None:
        self.background = 0

    async def lifespan(self, nursery: trio.Nursery) -> None:
        nursery.start_soon(self._tick)

    async def _tick(self) -> None:
        self.background += 1
        try:
            await trio.sleep_forever()
        finally:
            self.background -= 1

    async def request(self, exchange: Exchange) -> None:
        await trio.sleep(0.01)
        exchange.set_request_header("X-Hooked", "1")

    async def response(self, exchange: Exchange, response: ResponseHead) -> None:
        await trio.sleep(0.01)
        exchange.set_response_header("X-Hooked", "1")

    async def access(self, exchange: Exchange, status: int) -> None:
        await trio.lowlevel.checkpoint()
        exchange.log("hooked", str(status))


class Fails:
    async def response(self, exchange: Exchange, response: ResponseHead) -> None:
        await trio.lowlevel.checkpoint()
        raise RuntimeError("a hook's bug")


async def too_slow(exchange: Exchange) -> None:
    await trio.sleep(10)  # past its 0.05 s: on_error "pass"


def _rule(position: int, name: str, timeout_s: float = 1.0, **match: object) -> Rule:
    action = HookAction("", name, timeout_s)
    return Rule(position, match=Match(**match), actions=(action,))  # type: ignore[arg-type]


SETTINGS = dataclasses.replace(
    CANCEL_SETTINGS,
    rules=RuleSet(
        (
            _rule(1, "awaits"),
            _rule(2, "slow", timeout_s=0.05, path_prefixes=(b"/big",)),
            _rule(3, "fails", path_prefixes=(b"/drip",)),
        )
    ),
)


def hooks() -> dict[str, object]:
    return {"awaits": Awaits(), "slow": too_slow, "fails": Fails()}


async def sweep_points_with_hooks() -> range:
    network = MemoryNetwork(capacity=4096)
    async with memory_origin(network, ScriptedOrigin()):
        with counting_steps() as counter:
            async with memory_proxy(SETTINGS, network, hooks=hooks()) as proxy:
                await exchanges(proxy, [])
    assert sorted(r.status for r in proxy.records) == [101] + [200] * 6
    assert all(("hooked", str(r.status)) in r.extra for r in proxy.records)
    stats = proxy.server.hook_stats
    assert (stats["slow"].timeouts, stats["fails"].errors) == (1, 1)
    return sweep_over(counter.total)


async def test_clients_reset_at_every_point_with_hooks_leave_nothing_behind(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    outcomes = set()
    for at in await sweep_points_with_hooks():
        proxy = await run_with_clients_reset(at, SETTINGS, hooks())
        outcomes.add(len(proxy.records))
    assert len(outcomes) > 3
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == []


async def test_the_server_cancelled_at_every_point_with_hooks_leaves_no_task(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    outcomes = set()
    for at in await sweep_points_with_hooks():
        given = hooks()
        if (proxy := await run_with_server_cancelled(at, SETTINGS, given)) is None:
            continue
        awaits = given["awaits"]
        assert isinstance(awaits, Awaits) and awaits.background == 0  # lifespan gone too
        outcomes.add(len(proxy.records))
    assert len(outcomes) > 3
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == []
