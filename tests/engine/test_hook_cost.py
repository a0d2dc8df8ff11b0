"""What a hook call costs: a hook that cannot wait runs in one timed step, without the cancel
scope a hook that awaits runs under (its deadline); errors, metrics and the blocking watch
are the same for both."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import trio
import trio.testing

from trioproxy.core._requestview import request_view
from trioproxy.core._ruleengine import RuleEngine
from trioproxy.core._rulemodel import HookAction, Response, Rule, RuleSet
from trioproxy.engine._hooks import HookCalls, HookSet
from trioproxy.hooks import Exchange
from trioproxy.hooks._watch import BlockingWatch


@pytest.fixture
def scopes_entered(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[trio.CancelScope]]:
    entered: list[trio.CancelScope] = []
    enter = trio.CancelScope.__enter__

    def counting(scope: trio.CancelScope) -> trio.CancelScope:
        entered.append(scope)
        return enter(scope)

    monkeypatch.setattr(trio.CancelScope, "__enter__", counting)
    yield entered


async def _request(
    hook: object,
    entered: list[trio.CancelScope],
    watch: BlockingWatch | None = None,
    **action: Any,
) -> tuple[Response | None, HookCalls | None, HookSet]:
    """The hook's request point run on a request; ``entered`` then holds only the scopes
    entered by the call (the test runner's own are left out)."""
    rules = RuleSet((Rule(position=1, actions=(HookAction("", "hook", **action),)),))
    hooks = HookSet.load(rules, embedded={"hook": hook}, watch=watch)
    view = request_view(b"GET", b"/a", [(b"Host", b"x")], "192.0.2.1")
    decision = RuleEngine(rules).evaluate(view, 0.0)
    entered.clear()
    answer, calls = await hooks.on_request(decision, view, b"rid-1")
    return answer, calls, hooks


async def test_a_hook_that_cannot_wait_runs_without_a_cancel_scope(
    scopes_entered: list[trio.CancelScope],
) -> None:
    seen: list[object] = []
    watch = BlockingWatch(lambda *slow: None)

    async def edits(exchange: Exchange) -> None:
        seen.append(watch._step and watch._step[:2])  # the step running: the watch's note
        exchange.set_request_header("x-hooked", "1")

    answer, calls, hooks = await _request(edits, scopes_entered, watch)
    assert scopes_entered == []
    assert answer is None and seen == [("hook", b"rid-1")] and watch._step is None
    assert calls is not None and calls.request_headers([]) == [(b"x-hooked", b"1")]
    assert hooks.stats["hook"].calls == 1 and hooks.stats["hook"].errors == 0


async def test_a_hook_that_cannot_wait_and_raises_gets_its_on_error(
    scopes_entered: list[trio.CancelScope],
) -> None:
    async def fails(exchange: Exchange) -> None:
        raise KeyError("no such user")

    answer, _calls, hooks = await _request(fails, scopes_entered, on_error=503)
    assert answer is not None and answer.status == 503
    assert hooks.stats["hook"].errors == 1 and scopes_entered == []


async def test_a_hook_that_awaits_still_runs_under_its_deadline(
    autojump_clock: trio.testing.MockClock, scopes_entered: list[trio.CancelScope]
) -> None:
    async def waits(exchange: Exchange) -> None:
        await trio.sleep(10)

    answer, _calls, hooks = await _request(waits, scopes_entered, timeout_s=0.5, on_error=502)
    assert answer is not None and answer.status == 502
    assert hooks.stats["hook"].timeouts == 1
    assert trio.current_time() == pytest.approx(0.5)
    assert scopes_entered  # its own, under which the deadline cancelled it
