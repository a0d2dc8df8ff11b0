"""Rules that decide the same for every request and change nothing in the request's plan (a
hook on every request) are marked once (`RuleEngine.constant_keeps_plan`), so that a request
given that decision skips applying it; any decision that changes the plan is never marked."""

from __future__ import annotations

from trioproxy.core._ruleengine import RuleEngine
from trioproxy.core._rulemodel import HookAction, Match, Rule, RuleSet

from .rules_support import engine

HOOK = HookAction("", "hook")


def test_a_hook_on_every_request_keeps_the_plan() -> None:
    rules = RuleEngine(RuleSet((Rule(position=1, actions=(HOOK,)),)))
    decision = rules.constant(b"/a")
    assert decision is not None and decision.actions
    assert rules.constant_keeps_plan is decision


def test_a_constant_decision_that_edits_the_request_is_not_marked() -> None:
    for toml in (
        '[[rules]]\nrequest_headers.set = { X-Env = "production" }\n',
        '[[rules]]\nresponse_headers.set = { Cache-Control = "no-store" }\n',
        "[[rules]]\nmax_request_body_bytes = 1024\n",
    ):
        rules = engine(toml)
        assert rules.constant(b"/a") is not None, toml
        assert rules.constant_keeps_plan is None, toml


def test_rules_decided_per_request_are_not_marked() -> None:
    hooked = Rule(position=1, match=Match(paths=frozenset({b"/b"})), actions=(HOOK,))
    rules = RuleEngine(RuleSet((hooked,)))
    assert rules.constant(b"/a") is None and rules.constant_keeps_plan is None
