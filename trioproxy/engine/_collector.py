"""One proxy's metrics collector: its request counters plus live values read at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from ..core._breaker import BreakerState
from ._diagnostics import dropped_lines
from ._metrics import HookSeries, MetricsSnapshot, Scalar

if TYPE_CHECKING:
    from prometheus_client.core import Metric

    from ._context import ProxyContext

__all__ = ["ProxyCollector"]


class ProxyCollector:
    """One proxy's metrics: its request counters plus live values read from the context
    (connections, tunnels, the pool, dropped log lines) at scrape time.

    Public as ``trioproxy.ProxyCollector``: an embedder registers one for a running proxy,
    ``REGISTRY.register(ProxyCollector(proxy.server.ctx))``, and scrapes on the event loop.
    The proxy counts requests only when its admin listener is on (``admin.listen``)."""

    def __init__(
        self, ctx: ProxyContext, access_log_dropped: Callable[[], int] | None = None
    ) -> None:
        self._ctx = ctx
        self._access_log_dropped = access_log_dropped

    def collect(self) -> Iterator[Metric]:
        """The prometheus-client Collector protocol; call it on the event loop."""
        return self.snapshot().collect()

    def snapshot(self) -> MetricsSnapshot:
        """Everything, copied now: call it on the event loop."""
        return self._ctx.metrics.snapshot(self._scalars(), self._hooks())

    def _hooks(self) -> tuple[HookSeries, ...]:
        hooks = self._ctx.now().hooks
        if hooks is None:
            return ()
        return tuple(
            (label, s.calls, s.errors, s.timeouts, s.slow_steps, s.seconds)
            for label, s in hooks.stats.items()
        )

    def _scalars(self) -> tuple[Scalar, ...]:
        ctx = self._ctx
        stats = ctx.stats
        pool = ctx.pool
        open_count, idle_count = pool.open_count, pool.idle_count
        dropped = self._access_log_dropped() if self._access_log_dropped is not None else 0
        return (
            (
                "gauge",
                "trioproxy_downstream_connections_open",
                "Client connections open now",
                stats.connections_open,
            ),
            (
                "counter",
                "trioproxy_downstream_connections",
                "Client connections accepted",
                stats.connections_total,
            ),
            ("gauge", "trioproxy_tunnels_open", "WebSocket tunnels open now", stats.tunnels_open),
            (
                "counter",
                "trioproxy_upstream_retries",
                "Requests retried on a fresh connection after a stale keep-alive one failed",
                stats.retries,
            ),
            (
                "gauge",
                "trioproxy_upstream_pool_size",
                "Idle upstream connections kept for reuse, at most (upstream.pool_size)",
                pool.limits.size,
            ),
            (
                "gauge",
                "trioproxy_upstream_pool_open",
                "Upstream connections open now: in use, idle or connecting",
                open_count,
            ),
            (
                "gauge",
                "trioproxy_upstream_pool_in_use",
                "Upstream connections in use or connecting",
                open_count - idle_count,
            ),
            (
                "gauge",
                "trioproxy_upstream_pool_idle",
                "Idle keep-alive upstream connections",
                idle_count,
            ),
            (
                "gauge",
                "trioproxy_upstream_pool_waiters",
                "Requests waiting for a free upstream connection",
                pool.waiting_count,
            ),
            (
                "counter",
                "trioproxy_upstream_connections_opened",
                "Upstream connections opened",
                pool.stats.opened,
            ),
            (
                "counter",
                "trioproxy_upstream_connections_reused",
                "Exchanges that reused a pooled upstream connection",
                pool.stats.reused,
            ),
            (
                "gauge",
                "trioproxy_upstream_breaker_open",
                "1 while the circuit breaker on the next hop is open or probing, else 0"
                " (with workers: how many have it open)",
                int(pool.breaker.state.state is not BreakerState.CLOSED),
            ),
            (
                "counter",
                "trioproxy_upstream_breaker_opens",
                "Times the circuit breaker opened after upstream.breaker_failures failed connects",
                pool.breaker.state.opens,
            ),
            (
                "counter",
                "trioproxy_upstream_breaker_rejected",
                "Requests answered 503 by the open circuit breaker, without a connect",
                pool.breaker.state.rejected,
            ),
            (
                "counter",
                "trioproxy_request_bodies_too_large",
                "Requests answered 413 (or cut) for a body over max_request_body_bytes",
                stats.bodies_too_large,
            ),
            (
                "counter",
                "trioproxy_access_log_dropped_lines",
                "Access-log lines lost because stdout was too slow or gone",
                dropped,
            ),
            (
                "counter",
                "trioproxy_diagnostics_dropped",
                "Diagnostics lines lost because stderr was full (nobody reading it)",
                dropped_lines(),
            ),
        )
