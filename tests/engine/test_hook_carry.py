"""Which requests carry their hooks past the request point: only those whose hooks asked for
something or define a later point; the others go on as if they had triggered no hook."""

from __future__ import annotations

from trioproxy.core._requestview import request_view
from trioproxy.core._ruleengine import RuleEngine
from trioproxy.core._rulemodel import HookAction, Response, Rule, RuleSet
from trioproxy.engine._hooks import HookCalls, HookSet
from trioproxy.hooks import Exchange


async def _request(hook: object) -> tuple[Response | None, HookCalls | None, HookSet]:
    rules = RuleSet((Rule(position=1, actions=(HookAction("", "hook"),)),))
    hooks = HookSet.load(rules, embedded={"hook": hook})
    view = request_view(b"GET", b"/a", [(b"Host", b"x")], "192.0.2.1")
    answer, calls = await hooks.on_request(RuleEngine(rules).evaluate(view, 0.0), view, b"rid")
    return answer, calls, hooks


async def test_a_hook_that_asks_for_nothing_is_done_with_after_the_request_point() -> None:
    async def noop(exchange: Exchange) -> None:
        pass

    answer, calls, hooks = await _request(noop)
    assert answer is None and calls is None
    assert hooks.users == 0 and hooks.stats["hook"].calls == 1


async def test_a_hook_that_asks_for_something_is_carried() -> None:
    async def logs(exchange: Exchange) -> None:
        exchange.log("seen", "yes")

    _answer, calls, hooks = await _request(logs)
    assert calls is not None and hooks.users == 1
    calls.release()
    assert hooks.users == 0


async def test_a_hook_with_a_later_point_is_carried_though_it_asked_for_nothing() -> None:
    seen: list[int] = []

    class Hook:
        async def request(self, exchange: Exchange) -> None:
            pass

        async def access(self, exchange: Exchange, status: int) -> None:
            seen.append(status)

    _answer, calls, _hooks = await _request(Hook())
    assert calls is not None and calls.calls[0]._phase == "response"


async def test_a_dropped_hooks_exchange_refuses_later_edits() -> None:
    kept: list[Exchange] = []

    async def keeps(exchange: Exchange) -> None:
        kept.append(exchange)

    _answer, calls, _hooks = await _request(keeps)
    assert calls is None
    try:
        kept[0].set_response_header("x-late", "1")
    except ValueError as exc:
        assert "access line" in str(exc)
    else:
        raise AssertionError("a late edit was accepted and would be lost")
