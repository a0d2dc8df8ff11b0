"""How a request finds its hooks: looked up once while the rules hand out the same actions
(rules that test nothing), again for each decision of its own (a rule's captures, a fault
that chose the request), and each hook reads its own request's captures."""

from __future__ import annotations

import re

from trioproxy.core._faults import Fault, FaultKind
from trioproxy.core._requestview import request_view
from trioproxy.core._ruleengine import RuleEngine
from trioproxy.core._rulemodel import FaultAction, HookAction, Match, Rule, RuleSet
from trioproxy.engine._hooks import HookSet
from trioproxy.hooks import Exchange


async def _run(engine: RuleEngine, hooks: HookSet, path: bytes) -> None:
    view = request_view(b"GET", path, [(b"Host", b"x")], "192.0.2.1")
    decision = engine.evaluate(view, 0.0)
    answer, calls = await hooks.on_request(decision, view, b"rid")
    assert answer is None and calls is None


async def test_each_request_reads_its_own_captures_and_every_hook_runs_in_rule_order() -> None:
    seen: list[tuple[str, str]] = []

    async def first(exchange: Exchange) -> None:
        seen.append(("first", exchange.request.captures["id"]))

    async def second(exchange: Exchange) -> None:
        seen.append(("second", exchange.request.captures.get("0", "-")))

    regex = Match(path_regex=re.compile(rb"^/a/(?P<id>\d+)$"))
    rules = RuleSet(
        (
            Rule(position=1, match=regex, actions=(HookAction("", "first"),)),
            Rule(position=2, actions=(HookAction("", "second"),)),
        )
    )
    hooks = HookSet.load(rules, embedded={"first": first, "second": second})
    engine = RuleEngine(rules)
    for path in (b"/a/1", b"/a/2", b"/b", b"/a/3"):
        await _run(engine, hooks, path)
    assert seen == [
        ("first", "1"),
        ("second", "-"),
        ("first", "2"),
        ("second", "-"),
        ("second", "-"),
        ("first", "3"),
        ("second", "-"),
    ]
    assert hooks.stats["first"].calls == 3 and hooks.stats["second"].calls == 4


async def test_the_same_actions_are_looked_up_once() -> None:
    async def hook(exchange: Exchange) -> None:
        pass

    rules = RuleSet((Rule(position=1, actions=(HookAction("", "hook"),)),))
    hooks = HookSet.load(rules, embedded={"hook": hook})
    engine, looked_up = RuleEngine(rules), []
    for path in (b"/a", b"/b"):
        await _run(engine, hooks, path)
        looked_up.append(hooks.last_hooks)
    assert looked_up[0] is looked_up[1] and [h.label for h, _ in looked_up[0]] == ["hook"]


async def test_a_fault_that_chose_the_request_is_no_hook() -> None:
    calls: list[str] = []

    async def hook(exchange: Exchange) -> None:
        calls.append(exchange.hook)

    fault = FaultAction(Fault(kind=FaultKind.LATENCY, delay_s=0.0))
    rules = RuleSet((Rule(position=1, actions=(fault, HookAction("", "hook"))),))
    hooks = HookSet.load(rules, embedded={"hook": hook})
    engine = RuleEngine(rules)
    view = request_view(b"GET", b"/x", [], "192.0.2.1")
    for _ in range(3):
        decision = engine.evaluate(view, 0.0)
        assert len(decision.actions) == 2  # (a fault that chooses every request)
        await hooks.on_request(decision, view, b"rid")
    assert calls == ["hook"] * 3
