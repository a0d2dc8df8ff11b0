"""Per-client token buckets in bounded memory, with the clock passed in (no I/O, no trio).

Each bucket is stored as one float, the time at which it will be full again (the "theoretical
arrival time" of the generic cell rate algorithm, which is a token bucket written differently):
a bucket whose time has passed is full, and a full bucket is the same as no bucket at all. So
memory only ever holds clients that spent tokens recently, and evicting the least recently seen
one when the table is full loses nothing unless every bucket is still refilling.

Callers pass ``now_s`` from a monotonic clock (``trio.current_time()`` in the proxy, plain
numbers in the tests), which keeps every decision deterministic under test.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Hashable

__all__ = ["DEFAULT_MAX_CLIENTS", "TokenBuckets", "retry_after_s"]

# One entry costs about 150 bytes (the dict slot, an int or str key, a float), so the default
# bounds one rate limit's table to a few megabytes however many addresses show up.
DEFAULT_MAX_CLIENTS = 20_000

# Sums of 1/rate are inexact: a token due back "now" may be computed a few ulps late, and must
# still be granted.
_EPSILON_S = 1e-9


class TokenBuckets:
    """``rate_per_s`` tokens per second refill each client's bucket of ``burst`` tokens."""

    __slots__ = ("_interval_s", "_max_clients", "_tat", "_tolerance_s", "evictions")

    def __init__(
        self, rate_per_s: float, burst: int, *, max_clients: int = DEFAULT_MAX_CLIENTS
    ) -> None:
        if not (rate_per_s > 0 and math.isfinite(rate_per_s)):
            raise ValueError(f"rate_per_s must be positive and finite, not {rate_per_s!r}")
        if burst < 1 or max_clients < 1:
            raise ValueError("burst and max_clients must be at least 1")
        self._interval_s = 1.0 / rate_per_s  # the time one token takes to come back
        # How far into the future a bucket's "full again" time may be while a token is left:
        # a full bucket holds `burst` tokens, so burst - 1 may already be spent.
        self._tolerance_s = (burst - 1) * self._interval_s
        self._max_clients = max_clients
        # Least recently seen first: that is the bucket most likely to be full already.
        self._tat: OrderedDict[Hashable, float] = OrderedDict()
        self.evictions = 0  # buckets forgotten while still refilling (for metrics)

    def __len__(self) -> int:
        return len(self._tat)

    def take(self, key: Hashable, now_s: float) -> float:
        """Take one token for ``key``: 0.0 when granted, else the seconds until one is back.

        A refused request takes nothing, so a client that keeps retrying too early is not
        pushed further back.
        """
        tat = self._tat.get(key)
        if tat is None or tat < now_s:
            tat = now_s  # full (or never seen): refilling starts now
        wait_s = tat - self._tolerance_s - now_s
        if wait_s > _EPSILON_S:
            self._tat.move_to_end(key)  # known: refusals come only from a stored bucket
            return wait_s
        if key in self._tat:
            self._tat.move_to_end(key)
        else:
            self._make_room(now_s)
        self._tat[key] = tat + self._interval_s
        return 0.0

    def _make_room(self, now_s: float) -> None:
        tat = self._tat
        # Full buckets at the stale end cost nothing to forget; then, if the table is still
        # full, the least recently seen client loses its (partly spent) bucket.
        while tat and next(iter(tat.values())) <= now_s:
            tat.popitem(last=False)
        if len(tat) >= self._max_clients:
            tat.popitem(last=False)
            self.evictions += 1


def retry_after_s(wait_s: float) -> int:
    """The ``Retry-After`` value for a wait: whole seconds, rounded up, at least 1
    (RFC 9110 10.2.3 allows only a non-negative integer of seconds)."""
    return max(1, math.ceil(wait_s - _EPSILON_S))  # float noise must not turn 2.0 into 3
