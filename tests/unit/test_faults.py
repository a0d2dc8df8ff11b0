"""Faults as data: the ``fault`` key of a rule, which requests a fault selects, its delays."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from trioproxy.config._faultconfig import parse_fault
from trioproxy.config._ruleconfig import parse_rules
from trioproxy.core._faults import (
    Direction,
    Distribution,
    Fault,
    FaultKind,
    FaultState,
    Point,
    Selection,
)
from trioproxy.core._requestview import request_view
from trioproxy.core._ruleengine import PASS, RuleEngine
from trioproxy.core._rulemodel import FaultAction


def _parsed(raw: Any) -> tuple[Fault | None, list[str]]:
    problems: list[str] = []
    fault = parse_fault(raw, "rules[1].fault", lambda path, msg: problems.append(f"{path}: {msg}"))
    return fault, problems


def test_a_fault_table_becomes_a_fault_with_its_selection() -> None:
    fault, problems = _parsed(
        {"kind": "reset", "at": "body", "after_bytes": 1000, "first": 2, "direction": "client"}
    )
    assert problems == []
    assert fault == Fault(
        FaultKind.RESET,
        Direction.CLIENT,
        Point.BODY,
        after_bytes=1000,
        selection=Selection(first=2),
    )


def test_a_fault_acts_at_its_kinds_default_point() -> None:
    fault, _ = _parsed({"kind": "latency", "delay_s": 0.5})
    assert fault is not None and fault.point is Point.BEFORE_HEAD
    fault, _ = _parsed({"kind": "truncate", "after_bytes": 10})
    assert fault is not None and fault.point is Point.BODY


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({}, "rules[1].fault.kind: missing: what the fault does, one of latency, bandwidth"),
        ({"kind": "explode"}, "rules[1].fault.kind: expected a fault kind: one of latency"),
        ({"kind": "answer", "direction": "origin"}, "rules[1].fault.direction: a answer fault"),
        (
            {"kind": "truncate", "at": "before_head"},
            "rules[1].fault.at: a truncate fault acts at body",
        ),
        ({"kind": "bandwidth"}, "rules[1].fault.bytes_per_s: a bandwidth fault needs"),
        ({"kind": "latency"}, "rules[1].fault.delay_s: a latency fault needs delay_s"),
        ({"kind": "hang", "first": 1, "every": 2}, "rules[1].fault.every: a fault selects one way"),
        (
            {"kind": "hang", "probability": 1.5},
            "rules[1].fault.probability: expected a probability",
        ),
        ({"kind": "hang", "delay": 1}, "rules[1].fault.delay: unknown key; did you mean"),
        ({"kind": "malformed", "garbage": "\u2603"}, "rules[1].fault.garbage: expected characters"),
        ({"kind": "informational", "status": 200}, "rules[1].fault.status: an informational"),
    ],
)
def test_a_bad_fault_is_named_with_its_key_path(raw: dict[str, Any], expected: str) -> None:
    fault, problems = _parsed(raw)
    assert fault is None
    assert any(problem.startswith(expected) for problem in problems), problems


def test_first_k_selects_the_first_k_matching_requests() -> None:
    state = FaultState(Fault(FaultKind.HANG, selection=Selection(first=2)))
    assert [state.select() for _ in range(5)] == [True, True, False, False, False]
    assert (state.seen, state.applied) == (5, 2)


def test_every_n_selects_every_nth_matching_request() -> None:
    state = FaultState(Fault(FaultKind.HANG, selection=Selection(every=3)))
    assert [state.select() for _ in range(7)] == [False, False, True, False, False, True, False]


def test_a_probability_with_a_seed_replays_the_same_choices() -> None:
    def choices(seed: int) -> list[bool]:
        state = FaultState(Fault(FaultKind.HANG, selection=Selection(probability=0.3, seed=seed)))
        return [state.select() for _ in range(200)]

    assert choices(7) == choices(7)
    assert choices(7) != choices(8)
    assert 30 <= sum(choices(7)) <= 90  # about 0.3 of 200


@pytest.mark.parametrize("distribution", list(Distribution))
def test_delays_replay_with_their_seed_and_are_never_negative(distribution: Distribution) -> None:
    fault = Fault(
        FaultKind.LATENCY,
        delay_s=0.1,
        jitter_s=0.5,
        distribution=distribution,
        selection=Selection(seed=3),
    )
    first, second = FaultState(fault), FaultState(fault)
    delays = [first.sample_delay_s() for _ in range(100)]
    assert delays == [second.sample_delay_s() for _ in range(100)]
    assert min(delays) >= 0
    assert len(set(delays)) > 50


def test_a_fixed_delay_is_exact() -> None:
    state = FaultState(Fault(FaultKind.LATENCY, delay_s=2.5))
    assert state.sample_delay_s() == 2.5


def test_bandwidth_waits_until_the_bytes_sent_are_within_the_rate() -> None:
    state = FaultState(Fault(FaultKind.BANDWIDTH, bytes_per_s=1000))
    assert state.bandwidth_wait_s(sent_bytes=500, elapsed_s=0.1) == pytest.approx(0.4)
    assert state.bandwidth_wait_s(sent_bytes=500, elapsed_s=1.0) == 0


RULES = """
[[rules]]
match.path_prefix = "/flaky/"
fault = { kind = "answer", status = 503, retry_after_s = 1, first = 2 }

[[rules]]
match.path = "/slow"
fault = { kind = "latency", delay_s = 120 }
"""


def _rules(text: str) -> tuple[RuleEngine, list[str]]:
    problems: list[str] = []
    rules = parse_rules(
        tomllib.loads(text)["rules"],
        lambda path, msg: problems.append(f"{path}: {msg}"),
        lambda path: None,
    )
    return RuleEngine(rules), problems


def _view(path: bytes) -> Any:
    return request_view(b"GET", path, [(b"host", b"example.test")], "192.0.2.1", peer_trusted=True)


def test_a_rule_selects_its_fault_for_the_requests_it_matches() -> None:
    engine, problems = _rules(RULES)
    assert problems == []
    decisions = [engine.evaluate(_view(b"/flaky/x"), 0.0) for _ in range(3)]
    assert [len(d.actions) for d in decisions] == [1, 1, 0]
    assert decisions[2] is PASS  # nothing selected: the request pays nothing more
    (triggered,) = decisions[0].actions
    assert isinstance(triggered.action, FaultAction) and triggered.fault is not None
    assert triggered.fault.fault is triggered.action.fault
    assert triggered.fault.fault.kind is FaultKind.ANSWER and triggered.fault.applied == 2
    assert engine.evaluate(_view(b"/other"), 0.0) is PASS


def test_a_fault_cannot_share_a_rule_with_an_answer() -> None:
    _, problems = _rules('[[rules]]\nrespond = { status = 200 }\nfault = { kind = "hang" }\n')
    assert any(p.startswith("rules[1].fault: never applies") for p in problems), problems


def test_a_fault_key_one_level_too_high_is_pointed_out() -> None:
    _, problems = _rules('[[rules]]\nkind = "hang"\nfault = { kind = "hang" }\n')
    assert "rules[1].kind: unknown key; did you mean 'rules[1].fault.kind'?" in problems
