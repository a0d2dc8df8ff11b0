"""`HookSet.users` under attack on the one-hook path, where a hook that cannot wait leaves
`users` alone unless its request is carried on: whatever a lone hook does (raise any
exception, answer, time out, wait across a reload), and however many requests pass, `users`
ends at 0 once every request is done, never below, and a reload's `stop()` ends the
lifespans exactly then."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import trio
import trio.testing

from trioproxy.core._requestview import request_view
from trioproxy.core._ruleengine import RuleEngine
from trioproxy.core._rulemodel import HookAction, Response, Rule, RuleSet
from trioproxy.engine._hooks import HookCalls, HookSet
from trioproxy.hooks import Exchange

Hook = Callable[[Exchange], Coroutine[Any, Any, None]]


def _hooks(hook: Hook, *, on_error: int = 0, timeout_s: float = 5.0) -> tuple[HookSet, Any]:
    action = HookAction("", "hook", on_error=on_error, timeout_s=timeout_s)
    rules = RuleSet((Rule(position=1, actions=(action,)),))
    hooks = HookSet.load(rules, embedded={"hook": hook})
    view = request_view(b"GET", b"/a", [(b"Host", b"x")], "192.0.2.1")
    return hooks, (RuleEngine(rules).evaluate(view, 0.0), view)


async def _request(hooks: HookSet, asked: Any) -> tuple[Response | None, HookCalls | None]:
    decision, view = asked
    return await hooks.on_request(decision, view, b"rid")


class _Interrupt(BaseException):
    """Not an Exception: a hook's error handling lets it through (as KeyboardInterrupt)."""


async def _raises_base(exchange: Exchange) -> None:
    exchange.set_request_header("x-a", "1")
    raise _Interrupt


async def _raises_after_answering(exchange: Exchange) -> None:
    exchange.respond(418, "tea")
    raise RuntimeError("boom")


async def _answers(exchange: Exchange) -> None:
    exchange.respond(418, "tea")


async def _logs(exchange: Exchange) -> None:
    exchange.log("seen", "yes")


async def _nothing(exchange: Exchange) -> None:
    pass


@pytest.mark.parametrize("on_error", [0, 503])
async def test_a_lone_hook_raising_a_base_exception_leaves_users_at_zero(on_error: int) -> None:
    hooks, asked = _hooks(_raises_base, on_error=on_error)
    with pytest.raises(_Interrupt):
        await _request(hooks, asked)
    assert hooks.users == 0
    hooks.stop()
    assert hooks.lifespans.cancel_called


@pytest.mark.parametrize("hook", [_raises_after_answering, _answers, _logs, _nothing])
@pytest.mark.parametrize("on_error", [0, 503])
async def test_many_requests_of_each_outcome_end_with_users_at_zero(
    hook: Hook, on_error: int
) -> None:
    hooks, asked = _hooks(hook, on_error=on_error)
    carried: list[HookCalls] = []
    for _ in range(5):
        _answer, calls = await _request(hooks, asked)
        assert hooks.users == len(carried) + (calls is not None)
        if calls is not None:
            carried.append(calls)
    hooks.stop()  # a reload, with requests still carried: the lifespans wait for them
    assert hooks.lifespans.cancel_called is (not carried)
    for calls in carried:
        calls.release()
        calls.release()  # (twice: counted once)
        assert hooks.users >= 0
    assert hooks.users == 0 and hooks.lifespans.cancel_called


@pytest.mark.parametrize("hook", [_answers, _logs, _nothing])
async def test_a_lone_hook_on_hooks_stopped_before_its_request(hook: Hook) -> None:
    # A request decided by the old rules runs its hook after the reload stopped them.
    hooks, asked = _hooks(hook)
    hooks.stop()
    assert hooks.lifespans.cancel_called
    _answer, calls = await _request(hooks, asked)
    assert hooks.users == (calls is not None)
    if calls is not None:
        calls.release()
    assert hooks.users == 0


@pytest.mark.parametrize("on_error", [0, 503])
async def test_a_lone_hook_timing_out_across_a_reload(
    autojump_clock: trio.testing.MockClock, on_error: int
) -> None:
    async def answers_then_hangs(exchange: Exchange) -> None:
        exchange.respond(418, "tea")
        await trio.sleep_forever()

    hooks, asked = _hooks(answers_then_hangs, on_error=on_error, timeout_s=1.0)
    results: list[tuple[Response | None, HookCalls | None]] = []

    async def request() -> None:
        results.append(await _request(hooks, asked))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(request)
        await trio.testing.wait_all_tasks_blocked()
        assert hooks.users == 1
        hooks.stop()  # the reload, while the hook waits
        assert not hooks.lifespans.cancel_called
    ((answer, calls),) = results
    if on_error:  # its status answers; counted until its access line
        assert answer is not None and answer.status == on_error
        assert calls is not None and hooks.users == 1 and not hooks.lifespans.cancel_called
        calls.release()
    else:  # its answer forgotten with the failed call: the request goes on, nothing carried
        assert answer is None and calls is None
    assert hooks.users == 0 and hooks.lifespans.cancel_called
