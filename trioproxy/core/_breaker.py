"""A passive circuit breaker on the next hop's connect path (pure: no I/O, no trio).

HAProxy's ``observe layer4`` / Envoy's outlier detection, reduced to what a single next hop
needs: after ``failures`` consecutive connect failures the breaker opens, and for
``cooldown_s`` requests that need a new connection get a 503 with ``Retry-After`` at once
instead of each waiting out the connect timeout. Then one request is let through as a probe
(half-open); its connect succeeding closes the breaker, failing opens it for another cooldown.

Only connects count, never responses: an origin answering 5xx is not a refusing next hop.
Any successful connect closes the breaker, whichever state it is in (a connect started before
the breaker opened that succeeds says the next hop accepts connections again).

The thresholds are passed in with each call, so a reload takes effect at the next request
without resetting the state.
"""

from __future__ import annotations

import enum
import math

__all__ = ["BreakerState", "CircuitBreaker", "Transition"]


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"  # one probe connect in flight; everyone else still refused


class Transition(enum.Enum):
    """A change worth a diagnostics line (`CircuitBreaker.failed` and `.succeeded` say)."""

    OPENED = "opened"  # from closed: the next hop just started refusing
    REOPENED = "reopened"  # the probe failed: another cooldown
    CLOSED = "closed"


class CircuitBreaker:
    """Consecutive connect failures counted; while open, `admit` says how long to wait."""

    __slots__ = ("consecutive", "opened_at", "opens", "probing", "rejected", "state")

    def __init__(self) -> None:
        self.state = BreakerState.CLOSED
        self.consecutive = 0  # connect failures in a row
        self.opened_at = 0.0
        self.probing = False  # the half-open probe is in flight
        self.opens = 0  # closed -> open transitions (for metrics)
        self.rejected = 0  # requests answered 503 by the breaker (for metrics)

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.state.value}, {self.consecutive} failure(s) in a row>"

    def admit(self, now: float, *, threshold: int, cooldown_s: float) -> int:
        """0 if a connect may be attempted now (the caller then reports `succeeded`,
        `failed` or `abandoned`); else the ``Retry-After`` seconds to answer with.
        ``threshold`` 0: the breaker is off (one left open by a reload closes quietly)."""
        if self.state is BreakerState.CLOSED:
            return 0
        if not threshold:
            self.state, self.probing = BreakerState.CLOSED, False
            return 0
        if self.state is BreakerState.OPEN:
            left_s = self.opened_at + cooldown_s - now
            if left_s > 0:
                return self._reject(left_s)
            self.state = BreakerState.HALF_OPEN
        if self.probing:
            # The probe decides within one connect timeout; ask for the shortest wait.
            return self._reject(1.0)
        self.probing = True
        return 0

    def _reject(self, wait_s: float) -> int:
        self.rejected += 1
        return max(1, math.ceil(wait_s))  # RFC 9110 10.2.3: whole seconds

    def succeeded(self) -> Transition | None:
        self.consecutive = 0
        self.probing = False
        if self.state is BreakerState.CLOSED:
            return None
        self.state = BreakerState.CLOSED
        return Transition.CLOSED

    def failed(self, now: float, *, threshold: int) -> Transition | None:
        """A connect failed. ``threshold`` 0: the breaker is off (and closes if it was open)."""
        self.consecutive += 1
        if not threshold:
            return None
        if self.state is BreakerState.HALF_OPEN and self.probing:
            self.probing = False
            self._open(now)
            return Transition.REOPENED
        if self.state is BreakerState.CLOSED and self.consecutive >= threshold:
            self.opens += 1
            self._open(now)
            return Transition.OPENED
        return None  # (already open: a connect started before it opened)

    def abandoned(self) -> None:
        """An admitted connect ended with neither answer (cancelled, or out of local
        resources): a probe's turn passes to the next request."""
        self.probing = False

    def _open(self, now: float) -> None:
        self.state = BreakerState.OPEN
        self.opened_at = now
