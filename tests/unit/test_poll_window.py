"""The busy-poll window (`core._pollwindow`): bounded by its limit, grown by short idle
periods, halved by long ones down to nothing."""

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


def test_long_idle_periods_halve_the_window_then_stop_polling() -> None:
    window, seen = LIMIT_S, []
    for _ in range(5):
        window = next_poll_window(window, LIMIT_S, 1.0)
        seen.append(window)
    assert seen == [LIMIT_S / 2, LIMIT_S / 4, LIMIT_S / 8, 0.0, 0.0]
    assert next_poll_window(LIMIT_S, LIMIT_S, LIMIT_S * 1.01) == LIMIT_S / 2
    assert next_poll_window(0.0, LIMIT_S, LIMIT_S) == LIMIT_S / 8  # (the limit itself: short)


def test_one_long_idle_period_among_short_ones_keeps_the_polling() -> None:
    window = LIMIT_S
    for idle in [10e-6] * 3 + [1.0] + [10e-6] * 3:
        window = next_poll_window(window, LIMIT_S, idle)
        assert window >= LIMIT_S / 2


@given(
    window=st.floats(0, LIMIT_S),
    idles=st.lists(st.floats(0, 1.0, allow_nan=False), max_size=50),
)
def test_the_window_never_passes_the_limit(window: float, idles: list[float]) -> None:
    for idle in idles:
        before = window
        window = next_poll_window(window, LIMIT_S, idle)
        assert window == 0.0 or LIMIT_S / 8 <= window <= LIMIT_S
        if idle > LIMIT_S:
            assert window <= before / 2  # long: never more polling
        else:
            assert window >= min(LIMIT_S, before)  # short: never less


def test_an_idle_proxy_stops_polling_within_four_long_idle_periods() -> None:
    window = LIMIT_S
    for _ in range(4):
        window = next_poll_window(window, LIMIT_S, 0.01)
    assert window == 0.0
