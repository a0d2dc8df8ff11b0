"""The circuit breaker (`core._breaker`) on the pool's connect path: asked before a connect,
told how it ended, and saying so on stderr when it opens or closes."""

from __future__ import annotations

import logging
from typing import Protocol

import trio

from ..core._breaker import CircuitBreaker, Transition
from ..core._errors import OutOfSockets, UpstreamConnectError, UpstreamTimeout, UpstreamUnavailable

log = logging.getLogger("trioproxy")


class BreakerLimits(Protocol):
    """The pool's limits as the breaker reads them (at each use: a reload applies at once)."""

    @property
    def breaker_failures(self) -> int: ...

    @property
    def breaker_cooldown_s(self) -> float: ...


class NextHopBreaker:
    """The pool's breaker: `admit` before each new connection, `record` after it."""

    __slots__ = ("state", "upstream")

    def __init__(self, upstream: str) -> None:
        self.state = CircuitBreaker()
        self.upstream = upstream  # host:port, for the lines

    def __repr__(self) -> str:
        return f"<NextHopBreaker {self.upstream} {self.state!r}>"

    def admit(self, limits: BreakerLimits) -> None:
        """Raise `UpstreamUnavailable` (503, Retry-After) while the breaker is open; else
        the caller connects, then calls `record` however the connect ends."""
        wait_s = self.state.admit(
            trio.current_time(),
            threshold=limits.breaker_failures,
            cooldown_s=limits.breaker_cooldown_s,
        )
        if wait_s:
            # The same words for every refusal while it is open: the lines aggregate.
            raise UpstreamUnavailable(
                f"circuit breaker open: upstream {self.upstream} refuses connections",
                retry_after_s=wait_s,
            )

    def record(self, limits: BreakerLimits, failure: BaseException | None) -> None:
        """An admitted connect ended: done (None), refused or timed out by the next hop, or
        neither (cancelled, or no local socket to be had: not the next hop's doing)."""
        state = self.state
        if failure is None:
            change = state.succeeded()
        elif isinstance(failure, UpstreamConnectError | UpstreamTimeout) and not isinstance(
            failure, OutOfSockets
        ):
            change = state.failed(trio.current_time(), threshold=limits.breaker_failures)
        else:
            state.abandoned()
            return
        if change is Transition.OPENED:
            log.warning(
                "circuit breaker opened: upstream %s failed %d connects in a row (last: %s);"
                " answering 503 for %gs, then probing",
                self.upstream,
                state.consecutive,
                failure,
                limits.breaker_cooldown_s,
            )
        elif change is Transition.REOPENED:
            log.debug("circuit breaker: probing upstream %s failed: %s", self.upstream, failure)
        elif change is Transition.CLOSED:
            log.info("circuit breaker closed: upstream %s accepts connections", self.upstream)
