"""Rules that decide the same for every request decide from the target alone, with no view
made (`RuleEngine.constant`): only for a target that cannot normalise to a health check (no
escape, no "/."), and never for a health check; what else a configuration needs per request
is decided once (`clocked`, `has_fault_actions`)."""

from __future__ import annotations

import pytest

from trioproxy.core._ruleengine import PASS

from .rules_support import engine, view

EVERY_REQUEST = '[[rules]]\nrequest_headers.set = { X-Env = "production" }\n'


def test_a_plain_target_gets_the_decision_evaluate_gives() -> None:
    rules = engine(EVERY_REQUEST)
    decision = rules.constant(b"/a/b?x=1")
    assert decision is not None and decision is rules.evaluate(view("/a/b?x=1"), 0.0)
    assert decision is not PASS


@pytest.mark.parametrize(
    "target", [b"/a/../admin", b"/%61", b"/a/./b", b"/x?q=%20", b"/./", b"/a//.b"]
)
def test_a_target_that_may_need_normalising_is_left_to_evaluate(target: bytes) -> None:
    assert engine(EVERY_REQUEST).constant(target) is None


@pytest.mark.parametrize("target", [b"/a//b", b"//a", b"/a.b//c.d", b"/a/b.c?d=/e"])
def test_a_target_whose_normalising_only_merges_slashes_gets_what_evaluate_gives(
    target: bytes,
) -> None:
    rules = engine(EVERY_REQUEST)
    decision = rules.constant(target)
    assert decision is not None and decision is rules.evaluate(view(target.decode()), 0.0)


@pytest.mark.parametrize(
    "target",
    [
        b"//.well-known/section-io/aee-hc/healthz",
        b"/.well-known/section-io/aee-hc/healthz?ts=1",
        b"/.well-known/x/../section-io/aee-hc/h",
    ],
)
def test_a_health_check_never_gets_the_rules_decision(target: bytes) -> None:
    # (Its path has a dot segment: left to `evaluate`, which passes it untouched.)
    rules = engine(EVERY_REQUEST)
    assert rules.constant(target) is None and rules.evaluate(view(target.decode()), 0) is PASS


def test_an_asterisk_form_target_is_left_to_evaluate_which_passes_it() -> None:
    rules = engine(EVERY_REQUEST)
    assert rules.constant(b"*") is None and rules.evaluate(view("*", method="OPTIONS"), 0) is PASS


def test_rules_with_a_condition_are_left_to_evaluate() -> None:
    rules = engine(EVERY_REQUEST + '[[rules]]\nmatch.path = "/b"\ndeny = true\n')
    assert rules.constant(b"/a") is None


def test_no_rules_pass_every_target_that_needs_no_normalising() -> None:
    assert engine("").constant(b"/a") is PASS


def test_the_clock_is_read_only_for_a_rate_limit() -> None:
    assert not engine(EVERY_REQUEST).clocked
    limited = engine("[[rules]]\nrate_limit = { rate = 10, burst = 20 }\n")
    assert limited.clocked and limited.constant(b"/a") is None


def test_fault_states_are_looked_for_only_with_a_fault_action() -> None:
    assert not engine(EVERY_REQUEST).has_fault_actions
    faulty = engine('[[rules]]\nfault = { kind = "answer", status = 503, first = 2 }\n')
    assert faulty.has_fault_actions
