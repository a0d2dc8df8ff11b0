"""Busy polling (`engine._busypoll`) attacked in a real trio run: a window far larger than any
configuration allows still ends the poll at trio's next deadline, at a thread's wake-up and
at a signal; turning it off mid-run stops every poll at once; a window never outgrows a
lowered limit for more than one idle period."""

from __future__ import annotations

import os
import signal
import time

import pytest
import trio

from trioproxy.engine._busypoll import BusyPoll, busy_poll

# A window no configuration allows (the setting's maximum is 1 ms): only the poll's own
# bounds can end it, so a test hangs (or fails its elapsed check) if a bound is missing.
HUGE_S = 30.0
SLACK_S = 0.5  # for a busy machine: far below HUGE_S, far above any bound tested


def _spinning() -> BusyPoll:
    busy = busy_poll(None, 50)
    assert busy is not None
    busy.limit_s = busy.window_s = HUGE_S
    return busy


def test_a_timer_fires_on_time_whatever_the_window() -> None:
    async def main() -> float:
        busy = _spinning()
        start = time.perf_counter()
        await trio.sleep(0.02)  # the loop's only wait: a deadline 20 ms ahead
        elapsed = time.perf_counter() - start
        busy_poll(busy, 0)
        return elapsed

    assert trio.run(main) < 0.02 + SLACK_S


def test_a_threads_answer_ends_the_poll() -> None:
    async def main() -> float:
        busy = _spinning()
        start = time.perf_counter()
        await trio.to_thread.run_sync(time.sleep, 0.01)  # wakes trio through its wake-up fd
        elapsed = time.perf_counter() - start
        busy_poll(busy, 0)
        return elapsed

    assert trio.run(main) < 0.01 + SLACK_S


def test_a_signal_ends_the_poll() -> None:
    async def main() -> float:
        with trio.open_signal_receiver(signal.SIGUSR1) as signals:
            busy = _spinning()

            def later() -> None:
                time.sleep(0.01)
                os.kill(os.getpid(), signal.SIGUSR1)

            start = time.perf_counter()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.to_thread.run_sync, later)
                async for signum in signals:
                    assert signum == signal.SIGUSR1
                    break
            elapsed = time.perf_counter() - start
            busy_poll(busy, 0)
        return elapsed

    assert trio.run(main) < 0.01 + SLACK_S


def test_turned_off_it_polls_no_more() -> None:
    async def main() -> float:
        busy = _spinning()
        busy_poll(busy, 0)  # (a reload to 0)
        start = time.perf_counter()
        # An idle period with no deadline for trio but one far ahead: a poll left installed
        # would spin through the whole sleep (measured as CPU time below).
        await trio.sleep(0.05)
        return time.perf_counter() - start

    cpu = time.process_time()
    assert trio.run(main) >= 0.05
    assert time.process_time() - cpu < 0.04  # asleep, not spinning


def test_a_lowered_limit_bounds_the_next_window() -> None:
    async def main() -> float:  # (`after_io_wait` reads the run's queue: called in one)
        busy = BusyPoll(limit_s=HUGE_S, readable_fd=_never_readable())
        busy.window_s = HUGE_S
        busy.limit_s = 50e-6  # (a reload lowering the limit: `busy_poll` retunes in place)
        busy.before_io_wait(1e-9)  # a deadline at once: the poll is bounded by it
        busy.after_io_wait(1e-9)
        return busy.window_s

    # The window that follows is within the new limit, whatever the last one was.
    assert trio.run(main) <= 50e-6


def _never_readable() -> int:
    read_end, write_end = os.pipe()
    _PIPES.append((read_end, write_end))
    return read_end


_PIPES: list[tuple[int, int]] = []


@pytest.fixture(autouse=True)
def _close_pipes() -> object:
    yield
    while _PIPES:
        for fd in _PIPES.pop():
            os.close(fd)
