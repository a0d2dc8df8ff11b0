"""The serving process's trio clock (`app._run.PlainClock`): `time.perf_counter` itself, so a
reading (about four a request) is a call of C, not a Python method; trio's sleeps and
deadlines keep working on it, and the serving run takes it."""

from __future__ import annotations

import time
from collections.abc import Callable

import trio

from trioproxy.app._run import PlainClock, run_with_access_log
from trioproxy.config._settings import Settings
from trioproxy.core._accesslog import AccessRecord


def test_a_reading_is_perf_counter_called_directly() -> None:
    clock = PlainClock()
    assert clock.current_time is time.perf_counter  # (a builtin: no Python frame)
    before = time.perf_counter()
    now = clock.current_time()
    assert before <= now <= time.perf_counter()
    assert 4.0 < clock.deadline_to_sleep_time(now + 5.0) <= 5.0


def test_trio_sleeps_and_deadlines_on_it() -> None:
    async def main() -> float:
        start = trio.current_time()
        with trio.move_on_after(0.05) as scope:
            await trio.sleep_forever()
        assert scope.cancelled_caught
        await trio.sleep(0.01)
        return trio.current_time() - start

    elapsed = trio.run(main, clock=PlainClock())
    assert 0.06 <= elapsed < 5.0


def test_the_serving_run_takes_it() -> None:
    clocks: list[trio.abc.Clock] = []

    async def main(sink: Callable[[AccessRecord], None], dropped: Callable[[], int]) -> None:
        clocks.append(trio.lowlevel.current_clock())

    run_with_access_log(Settings(), main)
    assert [type(clock) for clock in clocks] == [PlainClock]
