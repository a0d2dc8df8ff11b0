"""The cancellation sweeps of test_mem_cancellation, with hooks on every exchange: hooks that
await, raise, time out and edit, at the request, the response head and the access line, and a
lifespan task. Cut at every few scheduler steps (clients reset, the server cancelled), nothing
is left behind: no connection, no task, one access record per request, no internal error."""

from __future__ import annotations

import dataclasses
from functools import partial

import pytest
import trio
import trio.testing

from trioproxy.core._rulemodel import HookAction, Match, Rule, RuleSet
from trioproxy.hooks import Exchange, ResponseHead

from ..memnet import (
    MemoryNetwork,
    MemoryStream,
    ScriptedOrigin,
    counting_steps,
    handler_tasks,
    memory_origin,
    memory_proxy,
    wait_until,
)
from .test_cancellation import (
    CANCEL_SETTINGS,
    SWEEP_RUNS,
    check_one_record_per_request,
    exchanges,
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


async def steps_of_a_whole_run() -> int:
    network = MemoryNetwork(capacity=4096)
    async with memory_origin(network, ScriptedOrigin()):
        with counting_steps() as counter:
            async with memory_proxy(SETTINGS, network, hooks=hooks()) as proxy:
                await exchanges(proxy, [])
    assert sorted(r.status for r in proxy.records) == [101] + [200] * 6
    assert all(("hooked", str(r.status)) in r.extra for r in proxy.records)
    stats = proxy.server.hook_stats
    assert (stats["slow"].timeouts, stats["fails"].errors) == (1, 1)
    return counter.total


async def test_clients_reset_at_every_point_with_hooks_leave_nothing_behind(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    total = await steps_of_a_whole_run()
    outcomes = set()
    for at in range(1, total + 20, max(1, total // SWEEP_RUNS)):
        network = MemoryNetwork(capacity=4096)
        streams: list[MemoryStream] = []

        def reset_clients(streams: list[MemoryStream] = streams) -> None:
            for stream in streams:
                stream.reset()

        async with memory_origin(network, ScriptedOrigin()):
            async with memory_proxy(SETTINGS, network, hooks=hooks()) as proxy:
                with counting_steps(at, reset_clients), trio.fail_after(60):
                    await exchanges(proxy, streams)
                    await proxy.settled()
                proxy.check_no_leak()
                check_one_record_per_request(proxy)
                outcomes.add(len(proxy.records))
    assert len(outcomes) > 3
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == []


async def test_the_server_cancelled_at_every_point_with_hooks_leaves_no_task(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    total = await steps_of_a_whole_run()
    outcomes = set()
    for at in range(1, total + 20, max(1, total // SWEEP_RUNS)):
        network = MemoryNetwork(capacity=4096)
        origin = ScriptedOrigin()
        given = hooks()
        started = []
        async with memory_origin(network, origin):
            with trio.CancelScope() as scope, counting_steps(at, scope.cancel):
                async with memory_proxy(SETTINGS, network, hooks=given) as proxy:
                    started.append(proxy)
                    await exchanges(proxy, [])
            if not started:
                continue
            proxy = started[0]
            assert proxy.upstream_open == proxy.server.pool.open_count == 0
            assert handler_tasks() == 0
            assert len(proxy.records) == proxy.server.ctx.stats.requests
            awaits = given["awaits"]
            assert isinstance(awaits, Awaits) and awaits.background == 0  # lifespan gone too
            await wait_until(partial(lambda o: o.open == 0, origin))
            outcomes.add(len(proxy.records))
    assert len(outcomes) > 3
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == []
