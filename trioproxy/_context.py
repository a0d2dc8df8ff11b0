"""What every connection handler shares: settings, the upstream pool, the access-log sink."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from ._accesslog import AccessRecord
from ._headers import ForwardingRules
from ._metrics import RequestMetrics
from ._pool import UpstreamPool
from ._rules import RuleEngine, RuleSet
from ._settings import Settings


@dataclass(slots=True)
class ProxyStats:
    connections_open: int = 0
    connections_total: int = 0
    requests: int = 0
    retries: int = 0
    tunnels_open: int = 0


@dataclass(slots=True)
class ProxyContext:
    settings: Settings
    pool: UpstreamPool
    upstream_authority: bytes  # Host for HTTP/1.0 requests that sent none
    log_access: Callable[[AccessRecord], None]
    forwarding: ForwardingRules = field(default_factory=ForwardingRules)
    # The [[rules]] with their rate-limit state; falsy (and skipped) when there are none.
    rule_engine: RuleEngine = field(default_factory=lambda: RuleEngine(RuleSet()))
    stats: ProxyStats = field(default_factory=ProxyStats)
    # Per-request counters for the admin listener's /metrics (issue 7); ProxyServer feeds them
    # through `log_access` only while the admin listener is on.
    metrics: RequestMetrics = field(default_factory=RequestMetrics)
    draining: bool = False
    # Connections waiting for their next (or first) request, oldest first: cancelled at once
    # when draining begins, and one by one when a new client needs a connection slot.
    idle_scopes: dict[trio.CancelScope, None] = field(default_factory=dict)

    def start_draining(self) -> None:
        self.draining = True
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
