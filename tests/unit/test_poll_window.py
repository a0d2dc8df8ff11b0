"""The busy-poll window (`core._pollwindow`): bounded by its limit, grown by short idle
periods, nothing after a long one."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from trioproxy.core._pollwindow import next_poll_window

LIMIT_S = 50e-6


def test_short_idle_periods_grow_the_window_to_the_limit_in_four_steps() -> None:
    window, seen = 0.0, []
    for _ in range(5):
        window = next_poll_window(window, LIMIT_S, 10e-6)
        seen.append(window)
    assert seen == [LIMIT_S / 8, LIMIT_S / 4, LIMIT_S / 2, LIMIT_S, LIMIT_S]


def test_a_long_idle_period_stops_polling_and_a_short_one_starts_again() -> None:
    assert next_poll_window(LIMIT_S, LIMIT_S, 1.0) == 0.0
    assert next_poll_window(LIMIT_S, LIMIT_S, LIMIT_S * 1.01) == 0.0
    assert next_poll_window(0.0, LIMIT_S, LIMIT_S) == LIMIT_S / 8  # (the limit itself: short)


@given(
    window=st.floats(0, LIMIT_S),
    idles=st.lists(st.floats(0, 1.0, allow_nan=False), max_size=50),
)
def test_the_window_never_passes_the_limit(window: float, idles: list[float]) -> None:
    for idle in idles:
        window = next_poll_window(window, LIMIT_S, idle)
        assert 0.0 <= window <= LIMIT_S
        assert (window == 0.0) == (idle > LIMIT_S)
