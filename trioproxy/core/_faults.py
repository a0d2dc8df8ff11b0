"""Faults at HTTP boundaries: what a test asks the proxy to do wrong, and to which requests.

Pure: no I/O and no trio. A `Fault` is immutable data, loaded from a rule's ``fault`` key or
made in code; a `FaultState` holds its run-time state (how many requests it has seen, its
seeded random numbers) and decides, request by request, whether the fault applies
(`FaultState.select`) and with which numbers (`FaultState.sample_delay_s`). The engine carries
a selected fault out at the seam its `Point` names.

What each kind does, and where (``direction`` names the peer that sees the fault):

- ``latency``: wait ``delay_s`` (± ``jitter_s``, drawn from ``distribution``) before the head
  goes to that peer, or before each body chunk (``at = "body"``).
- ``bandwidth``: send to that peer at ``bytes_per_s`` at most (a dribble).
- ``hang``: send that peer nothing more; the request ends when a deadline or the client does.
- ``reset``: reset that peer's connection before the head, after it, or at body byte
  ``after_bytes``.
- ``truncate``: close that peer's connection cleanly after ``after_bytes`` body bytes.
- ``answer``: the proxy answers with ``status`` (and ``Retry-After``, ``body``) without asking
  the origin (towards the client only).
- ``close_after``: close the client connection after the response, though the response did
  not say ``Connection: close`` (a stale keep-alive for the client).
- ``informational``: send a 1xx (``status`` 100 or 103) before the answer (client only).
- ``malformed``: send ``garbage`` bytes instead of the response, then close (client only).

Selection, among the requests the rule matches: ``first = k`` (the first k), ``every = n``
(every n-th), ``probability = p`` (each with chance p from a generator seeded with ``seed``),
or all of them. The same seed gives the same choices and the same delays in the same order.
"""

from __future__ import annotations

import enum
import math
import random
from dataclasses import dataclass, field

__all__ = [
    "Direction",
    "Distribution",
    "Fault",
    "FaultKind",
    "FaultState",
    "Point",
    "Selection",
]


class FaultKind(enum.Enum):
    LATENCY = "latency"
    BANDWIDTH = "bandwidth"
    HANG = "hang"
    RESET = "reset"
    TRUNCATE = "truncate"
    ANSWER = "answer"
    CLOSE_AFTER = "close_after"
    INFORMATIONAL = "informational"
    MALFORMED = "malformed"


class Direction(enum.Enum):
    CLIENT = "client"  # the response on its way to the client
    ORIGIN = "origin"  # the request on its way to the origin


class Point(enum.Enum):
    BEFORE_HEAD = "before_head"
    AFTER_HEAD = "after_head"
    BODY = "body"  # between body chunks, or at body byte ``after_bytes``


class Distribution(enum.Enum):
    UNIFORM = "uniform"  # delay_s ± jitter_s, evenly
    NORMAL = "normal"  # mean delay_s, standard deviation jitter_s (never below 0)
    EXPONENTIAL = "exponential"  # mean delay_s (jitter_s unused): waits with a long tail


# Which kinds make sense in which direction, and at which points (the loader checks a fault
# against these, and says what is allowed).
CLIENT_ONLY = frozenset(
    {FaultKind.ANSWER, FaultKind.CLOSE_AFTER, FaultKind.INFORMATIONAL, FaultKind.MALFORMED}
)
POINTS: dict[FaultKind, frozenset[Point]] = {
    FaultKind.LATENCY: frozenset({Point.BEFORE_HEAD, Point.BODY}),
    FaultKind.BANDWIDTH: frozenset({Point.BODY}),
    FaultKind.HANG: frozenset({Point.BEFORE_HEAD, Point.AFTER_HEAD, Point.BODY}),
    FaultKind.RESET: frozenset({Point.BEFORE_HEAD, Point.AFTER_HEAD, Point.BODY}),
    FaultKind.TRUNCATE: frozenset({Point.BODY}),
    FaultKind.ANSWER: frozenset({Point.BEFORE_HEAD}),
    FaultKind.CLOSE_AFTER: frozenset({Point.BODY}),
    FaultKind.INFORMATIONAL: frozenset({Point.BEFORE_HEAD}),
    FaultKind.MALFORMED: frozenset({Point.BEFORE_HEAD, Point.AFTER_HEAD}),
}
# Where a kind acts when the fault does not say.
DEFAULT_POINT: dict[FaultKind, Point] = {
    FaultKind.LATENCY: Point.BEFORE_HEAD,
    FaultKind.BANDWIDTH: Point.BODY,
    FaultKind.HANG: Point.BEFORE_HEAD,
    FaultKind.RESET: Point.BEFORE_HEAD,
    FaultKind.TRUNCATE: Point.BODY,
    FaultKind.ANSWER: Point.BEFORE_HEAD,
    FaultKind.CLOSE_AFTER: Point.BODY,
    FaultKind.INFORMATIONAL: Point.BEFORE_HEAD,
    FaultKind.MALFORMED: Point.BEFORE_HEAD,
}


@dataclass(frozen=True, slots=True)
class Selection:
    """Which of the matching requests a fault applies to; all of them when nothing is set."""

    first: int | None = None
    every: int | None = None
    probability: float | None = None
    seed: int = 0


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault, as configured: immutable and comparable (part of the settings)."""

    kind: FaultKind
    direction: Direction = Direction.CLIENT
    at: Point | None = None  # None: the kind's default point
    delay_s: float = 0.0
    jitter_s: float = 0.0
    distribution: Distribution = Distribution.UNIFORM
    bytes_per_s: int = 0
    after_bytes: int = 0
    status: int = 503
    retry_after_s: int | None = None
    body: bytes | None = None
    garbage: bytes = b"HTTP/1.1 200 OK\r\nContent-Length: nonsense\r\n\r\n"
    selection: Selection = Selection()
    name: str = ""  # shown in the journal and in diagnostics

    @property
    def point(self) -> Point:
        return self.at or DEFAULT_POINT[self.kind]

    @property
    def label(self) -> str:
        where = self.point.value if self.kind is not FaultKind.ANSWER else str(self.status)
        return self.name or f"{self.kind.value}@{self.direction.value}:{where}"

    def problems(self) -> list[tuple[str, str]]:
        """(key, message) for settings that cannot go together; [] when the fault is sound."""
        found: list[tuple[str, str]] = []
        if self.kind in CLIENT_ONLY and self.direction is not Direction.CLIENT:
            found.append(("direction", f"a {self.kind.value} fault acts towards the client only"))
        if self.point not in POINTS[self.kind]:
            allowed = ", ".join(sorted(p.value for p in POINTS[self.kind]))
            found.append(("at", f"a {self.kind.value} fault acts at {allowed}"))
        if self.kind is FaultKind.BANDWIDTH and self.bytes_per_s <= 0:
            found.append(("bytes_per_s", "a bandwidth fault needs bytes_per_s of at least 1"))
        if self.kind is FaultKind.LATENCY and self.delay_s <= 0 and self.jitter_s <= 0:
            found.append(("delay_s", "a latency fault needs delay_s (or jitter_s) above 0"))
        if isinstance(self.status, bool) or not isinstance(self.status, int):
            # (A Fault made in code: its status goes to h11 unchecked, `text_response`.)
            found.append(("status", f"a status is an int, found {self.status!r}"))
        elif self.kind is FaultKind.INFORMATIONAL and self.status not in (100, 102, 103):
            found.append(("status", "an informational fault sends 100, 102 or 103"))
        elif self.kind is FaultKind.ANSWER and not 200 <= self.status <= 599:
            found.append(("status", "an answer's status is from 200 to 599"))
        chosen = [
            key
            for key, value in (
                ("first", self.selection.first),
                ("every", self.selection.every),
                ("probability", self.selection.probability),
            )
            if value is not None
        ]
        if len(chosen) > 1:
            found.append((chosen[1], f"a fault selects one way; found {chosen[0]} and {chosen[1]}"))
        return found


@dataclass(slots=True)
class FaultState:
    """A fault with its run-time state: one per fault per proxy process. Not thread-safe (one
    event loop uses it). ``seen`` and ``applied`` count the matching requests and the
    selected ones, for the journal and ``GET /faults``."""

    fault: Fault
    seen: int = 0
    applied: int = 0
    _random: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # One generator per fault: choices and delays of one fault do not shift when another
        # fault is added, so a seed keeps replaying the same run.
        self._random = random.Random(self.fault.selection.seed)

    def select(self) -> bool:
        """Whether the fault applies to the next matching request (counts it)."""
        self.seen += 1
        selection = self.fault.selection
        if selection.first is not None:
            chosen = self.seen <= selection.first
        elif selection.every is not None:
            chosen = self.seen % selection.every == 0
        elif selection.probability is not None:
            chosen = self._random.random() < selection.probability
        else:
            chosen = True
        if chosen:
            self.applied += 1
        return chosen

    def sample_delay_s(self) -> float:
        """One delay for a latency fault, from its distribution (never negative)."""
        fault = self.fault
        if fault.distribution is Distribution.EXPONENTIAL:
            return self._random.expovariate(1 / fault.delay_s) if fault.delay_s > 0 else 0.0
        if fault.distribution is Distribution.NORMAL:
            return max(0.0, self._random.gauss(fault.delay_s, fault.jitter_s))
        if fault.jitter_s == 0:
            return fault.delay_s
        low = max(0.0, fault.delay_s - fault.jitter_s)
        return self._random.uniform(low, fault.delay_s + fault.jitter_s)

    def bandwidth_wait_s(self, sent_bytes: int, elapsed_s: float) -> float:
        """How long to wait before more bytes may go, so that ``sent_bytes`` over the time
        since the first byte stays within ``bytes_per_s`` (0: may send now)."""
        allowed_at = sent_bytes / self.fault.bytes_per_s
        return max(0.0, allowed_at - elapsed_s) if math.isfinite(allowed_at) else 0.0
