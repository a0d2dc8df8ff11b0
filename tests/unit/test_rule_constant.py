"""Rule sets that decide the same for every request (no conditions, no answers, no rewrites):
decided once when the engine is built, and still the same decision as evaluating each."""

from __future__ import annotations

from trioproxy.core._ruleengine import PASS, RuleEngine

from .rules_support import engine, outcome, rules_of, view

EVERY_REQUEST = (
    "[[rules]]\n"
    'request_headers.set = { X-Env = "production" }\n'
    'response_headers.set = { Cache-Control = "no-store" }\n'
    "max_request_body_bytes = 1024\n"
    "[[rules]]\n"
    'request_headers.remove = ["X-Debug"]\n'
)


def test_rules_for_every_request_give_one_decision_made_once() -> None:
    rules = engine(EVERY_REQUEST)
    first, second = rules.evaluate(view("/a"), 0.0), rules.evaluate(view("/b?x", host="o"), 1.0)
    assert first is second  # not evaluated again
    assert outcome(first, view("/a", headers=(("X-Debug", "1"),))) == (
        "forward",
        "/a",
        [("X-Env", "production")],
    )
    assert first.max_request_body_bytes == 1024
    assert first.response_headers(200, []) == [(b"Cache-Control", b"no-store")]


def test_the_health_check_still_passes_every_rule() -> None:
    assert engine(EVERY_REQUEST).evaluate(view("/.well-known/section-io/aee-hc/healthz"), 0) is PASS


def test_a_rule_with_a_condition_is_evaluated_per_request() -> None:
    rules = engine(
        EVERY_REQUEST + '[[rules]]\nmatch.path = "/b"\nrequest_headers.set = { X-B = "1" }\n'
    )
    assert outcome(rules.evaluate(view("/a"), 0), view("/a"))[2] == [("X-Env", "production")]
    assert ("X-B", "1") in outcome(rules.evaluate(view("/b"), 0), view("/b"))[2]


def test_a_rewrite_on_every_request_is_evaluated_per_request() -> None:
    rules = RuleEngine(rules_of('[[rules]]\nrewrite = "/v2$path"\n'))
    assert rules.evaluate(view("/a"), 0).target == b"/v2/a"
    assert rules.evaluate(view("/b"), 0).target == b"/v2/b"
