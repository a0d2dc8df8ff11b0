"""When the blocking watch's thread looks: as a running step would reach the threshold, else
every idle period; a slow step is reported once."""

from __future__ import annotations

import time

import pytest

from trioproxy.hooks._watch import IDLE_S, BlockingWatch


def test_with_no_step_running_the_watch_sleeps_its_idle_period() -> None:
    watch = BlockingWatch(lambda *step: None, threshold_s=0.05)
    assert watch.idle_s == IDLE_S
    assert watch._check() == IDLE_S


def test_a_running_step_is_looked_at_again_when_it_would_reach_the_threshold() -> None:
    watch = BlockingWatch(lambda *step: None, threshold_s=10.0)
    watch._step = ("hook", "rid", time.perf_counter() - 4.0)
    assert watch._check() == pytest.approx(6.0, abs=0.5)
    assert watch._reported is None


def test_a_step_past_the_threshold_is_reported_once(caplog: pytest.LogCaptureFixture) -> None:
    watch = BlockingWatch(lambda *step: None, threshold_s=0.01)
    watch._step = step = ("hook", "rid", time.perf_counter() - 1.0)
    assert watch._check() == watch.idle_s
    assert watch._check() == watch.idle_s
    assert watch._reported is step
    lines = [r.getMessage() for r in caplog.records if "is blocking" in r.getMessage()]
    assert len(lines) == 1 and "rid" in lines[0]
