"""Virtual time and a seeded scheduler: what makes a memory world's run fast and repeatable.

trio runs each batch of ready tasks in a random order (to shake out ordering assumptions);
seeding that generator makes a run on the autojump clock the same every time. trio has no
public way to seed it: `seed_scheduler` reaches for the private generator that trio's own
hypothesis support seeds, in the trio versions trioproxy supports, and fails loudly (naming
the version) if a future trio moves it, rather than silently running unseeded.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import trio
import trio.testing

__all__ = ["SEEDABLE_TRIO", "run", "seed_scheduler", "virtual_time"]

# The trio versions whose scheduler generator is `trio._core._run._r` (pyproject pins trio
# within this range too: widen both together, after checking the attribute).
SEEDABLE_TRIO = ((0, 27), (0, 36))

T = TypeVar("T")


def _trio_version() -> tuple[int, int]:
    major, minor = trio.__version__.split(".")[:2]
    return int(major), int(minor)


def seed_scheduler(seed: int) -> None:
    """Seed trio's scheduler: the same seed, the same order of ready tasks."""
    low, high = SEEDABLE_TRIO
    generator = getattr(getattr(trio, "_core", None), "_run", None)
    generator = getattr(generator, "_r", None)
    if not low <= _trio_version() < high or not isinstance(generator, random.Random):
        raise RuntimeError(
            f"trioproxy.testing cannot seed trio {trio.__version__}'s scheduler (it knows"
            f" trio {low[0]}.{low[1]} to before {high[0]}.{high[1]}): install a trio in that"
            " range, or pass seed=None to run unseeded"
        )
    generator.seed(seed)


@contextmanager
def virtual_time() -> Iterator[trio.testing.MockClock]:
    """The autojump clock for the block: whenever every task waits, time jumps to the next
    deadline, so a 120 s timeout passes at once. Needs the run to be on a `MockClock`."""
    clock = trio.lowlevel.current_clock()
    if not isinstance(clock, trio.testing.MockClock):
        raise RuntimeError(
            "virtual time needs trio running on trio.testing.MockClock: ask for pytest-trio's"
            " autojump_clock fixture, run with trioproxy.testing.run(...), or pass"
            " autojump=False for real time"
        )
    before = clock.autojump_threshold
    clock.autojump_threshold = 0
    try:
        yield clock
    finally:
        clock.autojump_threshold = before


def run(main: Callable[[], Awaitable[T]], *, autojump: bool = True) -> T:
    """``trio.run(main)`` on the autojump clock (on the real one with ``autojump=False``): for
    a memory world outside pytest-trio."""
    if not autojump:
        return trio.run(main)
    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
