"""Hypothesis strategies of fault schedules, to property-test a client against the proxy::

    from hypothesis import given
    from trioproxy.testing import memory_world, run
    from trioproxy.testing.strategies import fault_schedules

    @given(fault_schedules(max_faults=3))
    def test_my_client_answers_right_or_fails_cleanly(schedule):
        async def scenario():
            async with memory_world(my_api) as world, world.faults(schedule):
                ...  # the right answer, or a clean error
        run(scenario)

A schedule is a list of `Fault`s, each valid, named ``f1``, ``f2``, ... and chosen for the
requests by ``first``, ``every`` or a seeded ``probability`` (or all of them). Hypothesis
shrinks a failing schedule towards fewer faults, earlier kinds in `KINDS` and smaller
numbers: the report shows the smallest schedule that still fails.
"""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import strategies as st

from ..core._faults import (
    CLIENT_ONLY,
    POINTS,
    Direction,
    Distribution,
    Fault,
    FaultKind,
    Point,
    Selection,
)

__all__ = ["KINDS", "fault_schedules", "faults"]

# In the order shrinking prefers: the plainest misbehaviour first.
KINDS = (
    FaultKind.ANSWER,
    FaultKind.RESET,
    FaultKind.LATENCY,
    FaultKind.TRUNCATE,
    FaultKind.HANG,
    FaultKind.CLOSE_AFTER,
    FaultKind.BANDWIDTH,
    FaultKind.INFORMATIONAL,
    FaultKind.MALFORMED,
)


def _selections() -> st.SearchStrategy[Selection]:
    return st.one_of(
        st.builds(Selection, first=st.integers(1, 3)),
        st.builds(Selection, every=st.integers(1, 3)),
        st.builds(
            Selection,
            probability=st.sampled_from([0.5, 0.25, 1.0]),
            seed=st.integers(0, 2**16),
        ),
        st.just(Selection()),
    )


@st.composite
def faults(
    draw: st.DrawFn,
    kinds: Sequence[FaultKind] = KINDS,
    directions: Sequence[Direction] = (Direction.CLIENT, Direction.ORIGIN),
    max_delay_s: float = 120.0,
    name: str = "",
) -> Fault:
    """One valid fault of one of ``kinds``, acting towards one of ``directions``."""
    kind = draw(st.sampled_from(list(kinds)))
    allowed = [d for d in directions if kind not in CLIENT_ONLY or d is Direction.CLIENT]
    direction = draw(st.sampled_from(allowed or [Direction.CLIENT]))
    at = draw(st.sampled_from(sorted(POINTS[kind], key=lambda p: p.value)))
    keys: dict[str, object] = {}
    if kind is FaultKind.LATENCY:
        keys["delay_s"] = draw(st.sampled_from([1.0, 5.0, 30.0, max_delay_s]))
        keys["distribution"] = draw(st.sampled_from(list(Distribution)))
        keys["jitter_s"] = draw(st.sampled_from([0.0, 1.0]))
    elif kind is FaultKind.BANDWIDTH:
        keys["bytes_per_s"] = draw(st.sampled_from([100, 1000, 100_000]))
    elif kind in (FaultKind.RESET, FaultKind.TRUNCATE, FaultKind.HANG) and at is Point.BODY:
        keys["after_bytes"] = draw(st.integers(0, 3000))
    elif kind is FaultKind.ANSWER:
        keys["status"] = draw(st.sampled_from([503, 500, 429, 502]))
    elif kind is FaultKind.INFORMATIONAL:
        keys["status"] = draw(st.sampled_from([100, 103]))
    fault = Fault(
        kind,
        direction,
        at,
        selection=draw(_selections()),
        name=name,
        **keys,  # type: ignore[arg-type]  # the keys its kind takes, drawn above
    )
    assert not fault.problems(), fault.problems()
    return fault


def fault_schedules(
    max_faults: int = 3,
    kinds: Sequence[FaultKind] = KINDS,
    directions: Sequence[Direction] = (Direction.CLIENT, Direction.ORIGIN),
    max_delay_s: float = 120.0,
) -> st.SearchStrategy[list[Fault]]:
    """Lists of up to ``max_faults`` faults (named ``f1``, ``f2``, ...) to apply together."""
    return st.integers(0, max_faults).flatmap(
        lambda count: st.tuples(
            *(faults(kinds, directions, max_delay_s, name=f"f{i + 1}") for i in range(count))
        ).map(list)
    )
