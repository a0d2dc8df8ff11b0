"""How long the event loop busy-polls before it sleeps: a window that adapts to the traffic.

`engine._busypoll` polls for at most the window, then sleeps. The window doubles after an
idle period of at most ``limit_s`` (the next event usually comes within reach, so a poll
catches it and the processor never sleeps) and halves after a longer one, down to nothing
below an eighth of the limit: an idle or lightly loaded proxy polls little, and one long
idle period among short ones does not stop the polling. This is KVM's halt polling
(``halt_poll_ns``, grown on short halts, shrunk on long ones with ``halt_poll_ns_shrink=2``),
applied one level up: the same wake-up latency, seen from inside the guest.
"""

from __future__ import annotations

__all__ = ["next_poll_window"]

# A window starts at this fraction of the limit (doubling: four short idle periods reach the
# limit), and halving below it stops the polling.
_FIRST_FRACTION = 1 / 8


def next_poll_window(window_s: float, limit_s: float, idle_s: float) -> float:
    """The window for the next idle period, after one of ``idle_s`` (polling included)
    under ``window_s``.

    >>> next_poll_window(0.0, 50e-6, 30e-6)  # short: start polling
    6.25e-06
    >>> next_poll_window(25e-6, 50e-6, 30e-6)  # short again: up to the limit
    5e-05
    >>> next_poll_window(50e-6, 50e-6, 0.2)  # long: poll half as long
    2.5e-05
    >>> next_poll_window(6.25e-06, 50e-6, 0.2)  # long again, at the least: stop polling
    0.0
    """
    if idle_s > limit_s:
        half = window_s / 2
        return half if half >= limit_s * _FIRST_FRACTION else 0.0
    return min(limit_s, max(window_s * 2, limit_s * _FIRST_FRACTION))
