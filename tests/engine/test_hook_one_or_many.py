"""One hook on a request takes a short path of its own (no list of exchanges): it must give
what the path for several hooks gives, for each outcome: nothing asked, an edit carried, an
answer, a raise with each on_error, a hook that waits, and the `users` count."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio
import trio.testing

from trioproxy.core._requestview import request_view
from trioproxy.core._ruleengine import RuleEngine
from trioproxy.core._rulemodel import HookAction, Response, Rule, RuleSet
from trioproxy.engine._hooks import HookCalls, HookSet
from trioproxy.hooks import Exchange


async def _noop(exchange: Exchange) -> None:
    pass


async def _run(
    hook: object, *, with_noop: bool, on_error: int = 0
) -> tuple[Response | None, HookCalls | None, HookSet]:
    """``hook`` on a request, alone or after a no-op hook's rule (the path for several)."""
    rules = [Rule(position=2, actions=(HookAction("", "hook", on_error=on_error),))]
    if with_noop:
        rules.insert(0, Rule(position=1, actions=(HookAction("", "noop"),)))
    ruleset = RuleSet(tuple(rules))
    hooks = HookSet.load(ruleset, embedded={"hook": hook, "noop": _noop})
    view = request_view(b"GET", b"/a", [(b"Host", b"x")], "192.0.2.1")
    decision = RuleEngine(ruleset).evaluate(view, 0.0)
    answer, calls = await hooks.on_request(decision, view, b"rid")
    return answer, calls, hooks


async def _asks_nothing(exchange: Exchange) -> None:
    pass


async def _edits(exchange: Exchange) -> None:
    exchange.set_request_header("x-a", "1")
    exchange.rewrite("/b")


async def _answers(exchange: Exchange) -> None:
    exchange.respond(418, "tea")


async def _raises(exchange: Exchange) -> None:
    exchange.set_request_header("x-a", "1")
    raise RuntimeError("boom")


async def _waits(exchange: Exchange) -> None:
    await trio.lowlevel.checkpoint()  # (it can wait: the path under a deadline)
    exchange.log("waited", "yes")


def _outcome(
    answer: Response | None, calls: HookCalls | None, hooks: HookSet
) -> tuple[object, ...]:
    """What the request goes on with, and the hook's counts (the no-op's left out)."""
    stats = hooks.stats["hook"]
    edits = None
    if calls is not None:
        edits = (calls.target(), calls.request_headers([]), calls.calls[-1]._phase)
    status = None if answer is None else (answer.status, answer.body)
    return status, calls is None, edits, hooks.users, stats.calls, stats.errors


@pytest.mark.parametrize("hook", [_asks_nothing, _edits, _answers, _raises, _waits])
@pytest.mark.parametrize("on_error", [0, 503])
async def test_one_hook_gives_what_the_path_for_several_gives(
    hook: Callable[[Exchange], object], on_error: int
) -> None:
    one = _outcome(*await _run(hook, with_noop=False, on_error=on_error))
    several = _outcome(*await _run(hook, with_noop=True, on_error=on_error))
    assert one == several


async def test_a_raising_hook_alone_is_counted_and_forgotten_or_answers_its_status(
    caplog: pytest.LogCaptureFixture,
) -> None:
    answer, calls, hooks = await _run(_raises, with_noop=False)
    assert answer is None and calls is None  # "pass": its edit forgotten, nothing carried
    assert hooks.stats["hook"].errors == 1 and hooks.users == 0
    assert "hook hook: request failed (request rid): RuntimeError('boom')" in caplog.text
    answer, calls, hooks = await _run(_raises, with_noop=False, on_error=503)
    assert answer is not None and answer.status == 503
    assert calls is not None and hooks.users == 1  # released after its access line
    calls.release()
    assert hooks.users == 0


async def test_a_hook_that_is_cancelled_alone_leaves_no_user_behind() -> None:
    async def hangs(exchange: Exchange) -> None:
        await trio.sleep_forever()

    rules = RuleSet((Rule(position=1, actions=(HookAction("", "hook", timeout_s=60),)),))
    hooks = HookSet.load(rules, embedded={"hook": hangs})
    view = request_view(b"GET", b"/a", [(b"Host", b"x")], "192.0.2.1")
    decision = RuleEngine(rules).evaluate(view, 0.0)
    with trio.move_on_after(0.01):
        await hooks.on_request(decision, view, b"rid")
    assert hooks.users == 0


async def test_one_hook_carries_one_exchange_and_several_one_each() -> None:
    _a, one, _h = await _run(_edits, with_noop=False)
    _a, several, _h = await _run(_edits, with_noop=True)
    assert one is not None and len(one.calls) == 1
    assert several is not None and len(several.calls) == 2


@pytest.mark.parametrize("carried", [False, True])
async def test_hooks_stopped_while_a_lone_hook_waits_end_when_its_request_is_done(
    carried: bool,
) -> None:
    go = trio.Event()

    async def waits(exchange: Exchange) -> None:
        await go.wait()
        if carried:
            exchange.log("seen", "yes")

    rules = RuleSet((Rule(position=1, actions=(HookAction("", "hook"),)),))
    hooks = HookSet.load(rules, embedded={"hook": waits})
    view = request_view(b"GET", b"/a", [(b"Host", b"x")], "192.0.2.1")
    decision = RuleEngine(rules).evaluate(view, 0.0)
    results: list[HookCalls | None] = []

    async def request() -> None:
        results.append((await hooks.on_request(decision, view, b"rid"))[1])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(request)
        await trio.testing.wait_all_tasks_blocked()
        assert hooks.users == 1
        hooks.stop()  # a reload replaced these hooks while the request's hook waits
        assert not hooks.lifespans.cancel_called
        go.set()
    calls = results[0]
    if carried:  # its access point is still to come: the lifespans wait for it
        assert calls is not None and not hooks.lifespans.cancel_called
        calls.release()
    assert hooks.users == 0 and hooks.lifespans.cancel_called
