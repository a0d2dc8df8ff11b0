"""The circuit breaker's state machine (`core._breaker`), on a fake clock; and its keys."""

from __future__ import annotations

import pytest

from trioproxy.config._config import ConfigError, settings_from_bytes
from trioproxy.config._configdump import render_toml
from trioproxy.core._breaker import BreakerState, CircuitBreaker, Transition

THRESHOLD, COOLDOWN_S = 3, 10.0


def admit(breaker: CircuitBreaker, now: float) -> int:
    return breaker.admit(now, threshold=THRESHOLD, cooldown_s=COOLDOWN_S)


def fail(breaker: CircuitBreaker, now: float) -> Transition | None:
    return breaker.failed(now, threshold=THRESHOLD)


def opened_at(now: float) -> CircuitBreaker:
    breaker = CircuitBreaker()
    for _ in range(THRESHOLD):
        assert admit(breaker, now) == 0
        change = fail(breaker, now)
    assert change is Transition.OPENED
    return breaker


def test_it_opens_after_the_threshold_of_failures_in_a_row_and_not_before() -> None:
    breaker = CircuitBreaker()
    assert [fail(breaker, 0.0) for _ in range(THRESHOLD - 1)] == [None] * (THRESHOLD - 1)
    assert breaker.state is BreakerState.CLOSED and admit(breaker, 0.0) == 0
    assert fail(breaker, 0.0) is Transition.OPENED
    assert breaker.state is BreakerState.OPEN  # type: ignore[comparison-overlap]  # (changed by fail)
    assert breaker.opens == 1


def test_a_success_resets_the_count() -> None:
    breaker = CircuitBreaker()
    for _ in range(THRESHOLD - 1):
        fail(breaker, 0.0)
    assert breaker.succeeded() is None  # closed already: nothing to say
    for _ in range(THRESHOLD - 1):
        assert fail(breaker, 0.0) is None
    assert breaker.state is BreakerState.CLOSED


def test_while_open_requests_are_refused_with_the_cooldown_left_rounded_up() -> None:
    breaker = opened_at(100.0)
    assert admit(breaker, 100.0) == 10
    assert admit(breaker, 105.5) == 5  # 4.5 s left: Retry-After is whole seconds, up
    assert admit(breaker, 109.99) == 1
    assert breaker.rejected == 3


def test_after_the_cooldown_one_probe_goes_and_everyone_else_waits_for_it() -> None:
    breaker = opened_at(0.0)
    assert admit(breaker, COOLDOWN_S) == 0  # the probe
    assert breaker.state is BreakerState.HALF_OPEN
    assert admit(breaker, COOLDOWN_S) == 1  # the probe decides soon: come back in a second
    assert admit(breaker, COOLDOWN_S + 5) == 1


def test_the_probe_succeeding_closes_it() -> None:
    breaker = opened_at(0.0)
    admit(breaker, COOLDOWN_S)
    assert breaker.succeeded() is Transition.CLOSED
    assert breaker.state is BreakerState.CLOSED and breaker.consecutive == 0
    assert admit(breaker, COOLDOWN_S) == 0


def test_the_probe_failing_opens_it_for_another_cooldown() -> None:
    breaker = opened_at(0.0)
    admit(breaker, 10.0)
    assert fail(breaker, 12.0) is Transition.REOPENED
    assert breaker.state is BreakerState.OPEN and breaker.opens == 1  # one opening, retried
    assert admit(breaker, 12.0) == 10
    assert admit(breaker, 22.0) == 0  # the next probe


def test_an_abandoned_probe_lets_the_next_request_probe() -> None:
    breaker = opened_at(0.0)
    assert admit(breaker, 10.0) == 0
    breaker.abandoned()  # the client left mid-connect: neither a success nor a failure
    assert admit(breaker, 10.0) == 0
    assert breaker.state is BreakerState.HALF_OPEN


def test_failures_of_connects_started_before_it_opened_change_nothing() -> None:
    breaker = opened_at(0.0)
    assert fail(breaker, 5.0) is None
    assert admit(breaker, 9.0) == 1  # the cooldown still counts from the opening


def test_a_late_success_while_open_closes_it() -> None:
    breaker = opened_at(0.0)
    assert breaker.succeeded() is Transition.CLOSED  # the next hop accepts again
    assert admit(breaker, 1.0) == 0


def test_threshold_zero_is_off_and_closes_an_open_breaker() -> None:
    breaker = CircuitBreaker()
    for _ in range(100):
        assert breaker.failed(0.0, threshold=0) is None
    assert breaker.admit(0.0, threshold=0, cooldown_s=COOLDOWN_S) == 0
    breaker = opened_at(0.0)
    assert breaker.admit(1.0, threshold=0, cooldown_s=COOLDOWN_S) == 0  # a reload turned it off
    assert breaker.state is BreakerState.CLOSED


def test_state_shows_in_its_repr() -> None:
    assert repr(opened_at(0.0)) == "<CircuitBreaker open, 3 failure(s) in a row>"


def test_keys_default_validate_and_show_in_the_config_dump() -> None:
    settings = settings_from_bytes(b"", file="t.toml")
    assert (settings.upstream.breaker_failures, settings.upstream.breaker_cooldown_s) == (5, 10.0)
    dump = render_toml(settings)
    assert "breaker_failures = 5\n" in dump and "breaker_cooldown_s = 10.0\n" in dump
    text = b"[upstream]\nbreaker_failures = -1\nbreaker_cooldown_s = 0\n"
    with pytest.raises(ConfigError) as caught:
        settings_from_bytes(text, file="t.toml")
    assert [str(p) for p in caught.value.problems] == [
        "t.toml:2: upstream.breaker_failures: expected an integer from 0 to 1000000, found -1",
        "t.toml:3: upstream.breaker_cooldown_s:"
        " expected a number from 0.1 to 3600 (seconds), found 0",
    ]
