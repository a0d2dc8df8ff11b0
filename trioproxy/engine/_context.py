"""What every connection handler shares: settings, the upstream pool, the access-log sink."""

from __future__ import annotations

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


@dataclass(slots=True)
class ProxyStats:
    connections_open: int = 0
    connections_total: int = 0
    requests: int = 0
    retries: int = 0
    tunnels_open: int = 0
    bodies_too_large: int = 0  # requests stopped by a body limit (413 or cut)


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
    (``stats``, ``metrics``, ``shared``, ``idle_scopes``, the pool)."""

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
    # Connections waiting for their next (or first) request, oldest first: cancelled at once
    # when draining begins, and one by one when a new client needs a connection slot. Every
    # version of the context (`now()`, `dataclasses.replace`) holds this same dict.
    idle_scopes: dict[trio.CancelScope, None] = field(default_factory=dict)
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
        for scope in self.idle_scopes:
            scope.cancel()

    def close_oldest_idle(self) -> bool:
        """Close the connection that has idled longest (nginx reuses such connections when
        it runs out); False if every connection is busy."""
        for scope in self.idle_scopes:
            if not scope.cancel_called:
                scope.cancel()
                return True
        return False
