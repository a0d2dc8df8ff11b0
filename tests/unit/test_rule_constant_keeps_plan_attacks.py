"""`RuleEngine.constant_keeps_plan` under attack: a constant decision is marked only when
applying it would change nothing, whatever else rides with the hook that makes it constant
(a header edit, a rewrite, a body limit, in the same rule or another, before or after)."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from trioproxy.core._ruleengine import RuleEngine
from trioproxy.core._rulemodel import HookAction, Rule, RuleSet

from .rules_support import rules_of

HOOK = HookAction("", "hook")

EDITS = (
    '[[rules]]\nrequest_headers.set = { X-Env = "production" }\n',
    '[[rules]]\nrequest_headers.remove = ["x-debug"]\n',
    '[[rules]]\nresponse_headers.set = { Cache-Control = "no-store" }\n',
    '[[rules]]\nresponse_headers.remove = ["server"]\n',
    "[[rules]]\nmax_request_body_bytes = 1024\n",
    "[[rules]]\nmax_request_body_bytes = 0\n",  # (0: a falsy limit is a limit too)
    '[[rules]]\nrewrite = "/v2$path"\n',
    '[[rules]]\nrewrite = "/fixed"\n',
)


def _with_hook(edit: str, *, same_rule: bool, hook_first: bool) -> RuleEngine:
    (rule,) = rules_of(edit).rules
    if same_rule:
        rules: tuple[Rule, ...] = (dataclasses.replace(rule, actions=(HOOK,)),)
    else:
        hooked = Rule(position=2, actions=(HOOK,))
        rules = (hooked, rule) if hook_first else (rule, hooked)
    return RuleEngine(RuleSet(rules))


@pytest.mark.parametrize("edit", EDITS)
@pytest.mark.parametrize(
    ("same_rule", "hook_first"), list(itertools.product((True, False), (True, False)))
)
def test_a_constant_decision_with_any_edit_is_never_marked(
    edit: str, same_rule: bool, hook_first: bool
) -> None:
    rules = _with_hook(edit, same_rule=same_rule, hook_first=hook_first)
    decision = rules.constant(b"/a")
    if decision is not None:  # (a rewrite from $path may make it per request)
        assert decision.actions
    assert rules.constant_keeps_plan is None, edit


def test_a_marked_decision_changes_nothing_and_answers_nothing() -> None:
    rules = RuleEngine(RuleSet((Rule(position=1, actions=(HOOK,)), Rule(2, actions=(HOOK,)))))
    decision = rules.constant_keeps_plan
    assert decision is not None and decision is rules.constant(b"/a")
    assert decision.response is None and decision.target is None
    assert not decision.request_ops and not decision.response_edits
    assert decision.max_request_body_bytes is None
