"""What every connection handler shares: settings, the upstream pool, the access-log sink."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from ..config._settings import Settings
from ..core._accesslog import AccessRecord
from ..core._faulttable import FaultTable
from ..core._headers import ForwardingRules, new_request_id
from ..core._ruleengine import RuleEngine
from ..core._rulemodel import RuleSet
from ._metrics import RequestMetrics
from ._pool import UpstreamPool

if TYPE_CHECKING:
    from ._hooks import HookSet
    from ._peer import Downstream, Wire


@dataclass(slots=True)
class ProxyStats:
    connections_open: int = 0
    connections_total: int = 0
    requests: int = 0
    retries: int = 0
    tunnels_open: int = 0
    bodies_too_large: int = 0  # requests stopped by a body limit (413 or cut)


class _Reaped:
    """A registry of waits with deadlines and the one task per server (`reap`) that acts on
    each at its deadline: the waits hold an entry here instead of a cancel scope with a
    deadline of their own (trio re-registers a scope's deadline as it is entered and left:
    several times the work of a dict's insert and pop). `_expire` says what acting is."""

    __slots__ = ("_wake",)

    def __init__(self) -> None:
        # The reaper's sleep, which ends no later than any deadline here (it may end earlier:
        # an entry that left meanwhile is not looked for).
        self._wake = trio.CancelScope()

    def _wake_by(self, deadline: float) -> None:
        # Set only when earlier (rarely: an empty registry, or an empty lane): setting a
        # deadline costs.
        if deadline < self._wake.deadline:  # noqa: PLR1730
            self._wake.deadline = deadline

    @property
    def wakes_at(self) -> float:
        """When the reaper looks next (inf: nothing has waited since it last looked)."""
        return self._wake.deadline

    async def reap(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Act on each entry at its deadline, for as long as the server runs."""
        task_status.started()
        while True:
            self._wake = trio.CancelScope(deadline=self._expire(trio.current_time()))
            with self._wake:
                await trio.sleep_forever()

    def _expire(self, now: float) -> float:
        """Act on the entries past their deadline; the next deadline (inf: none)."""
        raise NotImplementedError


class IdleConnections(_Reaped):
    """Client connections waiting for their next (or first) request, each until its deadline,
    oldest first. One task per server (`reap`) closes each at its deadline; the drain closes
    them all at once, and a newcomer at the connection limit the oldest. Closing a transport
    wakes the task waiting on it, so an idle connection holds one entry here and a deadline,
    not a cancel scope of its own (idle keep-alive connections are what a proxy holds most of)."""

    __slots__ = ("_lanes",)

    def __init__(self) -> None:
        super().__init__()
        # One lane per wait (client_header_s, client_idle_s, and what reloads set): within a
        # lane deadlines come in arrival order, so each lane's first entry expires next.
        self._lanes: dict[float, dict[Downstream, float]] = {}

    def add(self, down: Downstream, wait_s: float) -> None:
        """``down`` waits, at most ``wait_s`` from now."""
        deadline = trio.current_time() + wait_s
        lane = self._lanes.get(wait_s)
        if lane is None:
            lane = self._lanes[wait_s] = {}
        lane[down] = deadline
        self._wake_by(deadline)

    def discard(self, down: Downstream, wait_s: float) -> bool:
        """``down`` waits no more; False if it was closed meanwhile (expired, drained or
        evicted): its wait may have ended for a request that arrived just then."""
        lane = self._lanes.get(wait_s)
        return lane is not None and lane.pop(down, None) is not None

    def __len__(self) -> int:
        return sum(map(len, self._lanes.values()))

    def __repr__(self) -> str:
        return f"<IdleConnections [{len(self)} waiting | reaper wakes at {self.wakes_at:.1f}]>"

    def _expire(self, now: float) -> float:
        """Close the connections past their deadline; the next deadline (inf: none)."""
        nearest = math.inf
        for wait_s, lane in list(self._lanes.items()):
            expired = []
            for down, deadline in lane.items():
                if deadline > now:
                    nearest = min(nearest, deadline)
                    break
                expired.append(down)
            for down in expired:
                del lane[down]
                _close_quietly(down)
            if not lane:
                del self._lanes[wait_s]
        return nearest

    def close_all(self) -> None:
        for lane in self._lanes.values():
            for down in lane:
                _close_quietly(down)
            lane.clear()

    def close_oldest(self) -> bool:
        """Close the connection that has waited longest; False if none waits."""
        oldest: tuple[float, Downstream, dict[Downstream, float]] | None = None
        for wait_s, lane in self._lanes.items():
            for down, deadline in lane.items():  # each lane's first is its oldest
                if oldest is None or deadline - wait_s < oldest[0]:
                    oldest = (deadline - wait_s, down, lane)
                break
        if oldest is None:
            return False
        _, down, lane = oldest
        del lane[down]
        _close_quietly(down)
        return True


class OriginWaits(_Reaped):
    """Requests waiting for their origin's answer while nobody reads their client's socket
    (`_response`: a response head awaited for a request without a body), each until its
    wake time, in arrival order. One task per server (`reap`) wakes each still waiting then
    (`Wire.wait_readable_or_woken`: its transport's waits are interrupted, nothing closed),
    and that request goes on to watch its client too, under a scope of its own. Most
    answers come long before: the wait just leaves, having held an entry here instead of a
    cancel scope with a deadline."""

    __slots__ = ("_waiting",)

    def __init__(self) -> None:
        super().__init__()
        # Each wire's wake time; callers wait a constant delay, so in arrival order.
        self._waiting: dict[Wire, float] = {}

    def add(self, wire: Wire, at: float) -> None:
        """``wire``'s waiter is to be woken at ``at`` (later than every earlier entry's)."""
        self._waiting[wire] = at
        self._wake_by(at)

    def discard(self, wire: Wire) -> bool:
        """``wire``'s waiter waits no more; False if it was woken (or is being woken)."""
        return self._waiting.pop(wire, None) is not None

    def __len__(self) -> int:
        return len(self._waiting)

    def __repr__(self) -> str:
        return f"<OriginWaits [{len(self)} waiting | reaper wakes at {self.wakes_at:.1f}]>"

    def _expire(self, now: float) -> float:
        """Wake the waiters whose time has come; the next wake time (inf: none)."""
        nearest = math.inf
        woken = []
        for wire, at in self._waiting.items():
            if at > now:
                nearest = at
                break
            woken.append(wire)
        for wire in woken:
            del self._waiting[wire]
            with contextlib.suppress(OSError):
                wire.transport.wake_waiters()
        return nearest


def _close_quietly(down: Downstream) -> None:
    # Closed from the reaper, the drain or the accept loop, where an error would end the
    # server rather than one connection (`close(2)` can report an error; the fd is gone).
    with contextlib.suppress(OSError):
        down.close()


@dataclass(slots=True)
class Shared:
    """What every version of the context shares across reloads."""

    draining: bool = False
    # The context requests starting now take (None: the first one). A reload (SIGHUP) replaces
    # it; a request in flight keeps the one it took, so it finishes under the old settings.
    current: ProxyContext | None = None
    # Faults added while running (`proxy.fault`, POST /faults): they outlive reloads.
    faults: FaultTable = field(default_factory=FaultTable)
    # A journal is kept: exchanges collect the heads it shows (`AccessRecord.notes`).
    journal: bool = False
    # Request body bytes each journal entry keeps (0: none).
    journal_body_bytes: int = 0


@dataclass(slots=True, frozen=True)
class ProxyContext:
    """Built whole when the server starts (and again by each reload, with `replace`), never
    changed afterwards: the access-log sink, with or without the metrics observer, is decided
    at construction. What changes while serving lives in the mutable parts it holds
    (``stats``, ``metrics``, ``shared``, ``idle``, the pool)."""

    settings: Settings
    pool: UpstreamPool
    upstream_authority: bytes  # Host for HTTP/1.0 requests that sent none
    log_access: Callable[[AccessRecord], None]
    forwarding: ForwardingRules = field(default_factory=ForwardingRules)
    # The [[rules]] with their rate-limit state; falsy (and skipped) when there are none.
    rule_engine: RuleEngine = field(default_factory=lambda: RuleEngine(RuleSet()))
    # The hooks the rules name, loaded (None: no rule names one); swapped with the rules.
    hooks: HookSet | None = None
    stats: ProxyStats = field(default_factory=ProxyStats)
    # Per-request counters for the admin listener's /metrics; ProxyServer feeds them
    # through `log_access` only when it was built to count (`ProxyServer`'s count_requests).
    metrics: RequestMetrics = field(default_factory=RequestMetrics)
    shared: Shared = field(default_factory=Shared)
    # Connections waiting for their next (or first) request: closed at their deadline, at
    # once when draining begins, and oldest first when a new client needs a connection slot.
    # Every version of the context (`now()`, `dataclasses.replace`) holds this same one.
    idle: IdleConnections = field(default_factory=IdleConnections)
    # Requests waiting for their origin's response head: woken to watch their client too.
    # Shared by every version of the context, as ``idle`` is.
    origin_waits: OriginWaits = field(default_factory=OriginWaits)
    # Makes the ID of a request that brings none (a seam: the simulation counts them).
    new_request_id: Callable[[], bytes] = new_request_id

    @property
    def draining(self) -> bool:
        return self.shared.draining

    def now(self) -> ProxyContext:
        """The context for a request starting now: the latest loaded configuration's."""
        return self.shared.current or self

    def start_draining(self) -> None:
        self.shared.draining = True
        self.idle.close_all()

    def close_oldest_idle(self) -> bool:
        """Close the connection that has idled longest (nginx reuses such connections when
        it runs out); False if every connection is busy."""
        return self.idle.close_oldest()
