"""The server: accept loops, one task per connection, the pool's reaper, graceful drain.

Task tree (every task has an owner)::

    ProxyServer.run
    └── outer nursery ── pool (reaper, resolver lookups), idle connections' reaper,
        │                origin waits' reaper, admin listener (when on: `_admin`)
        └── handlers nursery ── one serve_connection task per client
            └── accept nursery ── one accept loop per listener

Draining cancels the accept nursery, closes idle keep-alive connections at once, and gives
in-flight exchanges ``drain_s`` before the handlers nursery is cancelled. The admin listener
lives in the outer nursery, so its /healthz answers 503 throughout the drain.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import trio

from ..config._settings import Settings
from ..core._accesslog import AccessRecord
from ..core._addr import format_host_port
from ..core._faulttable import FaultTable
from ..core._headers import ForwardingRules
from ..core._ruleengine import BucketsFactory, RuleEngine, local_buckets
from ..core._rulemodel import trusted_networks
from ._collector import ProxyCollector
from ._connection import serve_connection
from ._context import ProxyContext
from ._journal import LiveJournal, recording
from ._listen import accept_forever, as_listener
from ._metrics import RequestMetrics, observing
from ._pool import Connector, PoolLimits, UpstreamPool
from ._resolver import Lookup, Resolver, system_lookup
from ._transport import Listener, Transport, connect_socket

if TYPE_CHECKING:  # imported when the admin listener is on: 0.6 MiB less for the rest
    from ..core._admincontrol import AdminControl
    from ._admin import AdminServer
    from ._hooks import HookSet, HookStats

log = logging.getLogger("trioproxy")


class ProxyServer:
    def __init__(
        self,
        settings: Settings,
        upstream: tuple[str, int],
        access_log: Callable[[AccessRecord], None],
        *,
        access_log_dropped: Callable[[], int] | None = None,
        buckets: BucketsFactory = local_buckets,
        count_requests: bool | None = None,
        lookup: Lookup = system_lookup,
        connect: Connector = connect_socket,
        journal_size: int | None = None,
        journal_body_bytes: int | None = None,
        hooks: Mapping[str, object] | None = None,
    ) -> None:
        """``count_requests``: feed the /metrics counters from every access record; by
        default when ``settings.admin.listen`` is set. A worker whose supervisor serves
        /metrics passes True; so does a caller that hands ``run`` a prebound admin listener.
        Decided here, once: the context's access-log sink is never swapped afterwards.

        ``lookup`` and ``connect`` reach the upstream: the system resolver and TCP, or a
        `MemoryNetwork` in engine tests.

        ``hooks``: hook objects by name, for rules whose hook names no file (embedding).
        Raises `HookLoadError` when a hook cannot be loaded.

        ``journal_size``: exchanges the journal keeps (by default ``admin.journal_size``);
        0 keeps no journal, and the access-log sink stays as it was. ``journal_body_bytes``:
        the request body bytes each entry keeps (by default ``admin.journal_body_bytes``)."""
        self.settings = settings
        self._embedded_hooks = hooks
        self.hook_stats: dict[str, HookStats] = {}
        self._nursery: trio.Nursery | None = None  # the outer one, for hooks' lifespans
        self._watching = False  # the blocking watch's thread is running
        self._last_hooks: HookSet | None = None  # its watch is reused by every later set
        self.upstream = upstream
        # Admin listener: its bound address once run() has started it, and where
        # the count of dropped access-log lines comes from (the CLI's writer thread).
        self.admin_address: tuple[str, int] | None = None
        self._access_log_dropped = access_log_dropped
        resolver = Resolver(
            upstream[0],
            upstream[1],
            ttl_s=settings.upstream.dns_ttl_s,
            negative_ttl_s=settings.upstream.dns_negative_ttl_s,
            lookup_timeout_s=settings.timeouts.upstream_connect_s,
            lookup=lookup,
        )
        pool = UpstreamPool(resolver, _pool_limits(settings), connect)
        # Requests are counted only when someone can read the counts: with the admin listener
        # off, the hot path pays nothing. Counting at the access-log sink counts every logged
        # request, and only those, without a call in the connection code.
        self._counting = bool(settings.admin.listen) if count_requests is None else count_requests
        metrics = RequestMetrics()
        size = settings.admin.journal_size if journal_size is None else journal_size
        self.journal = LiveJournal(size) if size else None
        self.ctx = ProxyContext(
            settings=settings,
            pool=pool,
            upstream_authority=format_host_port(*upstream).encode("ascii"),
            log_access=self._sink(metrics, access_log),
            forwarding=_forwarding(settings),
            rule_engine=RuleEngine(settings.rules, buckets=buckets),
            metrics=metrics,
            hooks=self._load_hooks(settings, None),
        )
        self.ctx.shared.journal = self.journal is not None
        if journal_body_bytes is None:
            journal_body_bytes = settings.admin.journal_body_bytes
        if journal_body_bytes < 0:
            raise ValueError(f"journal_body_bytes must be 0 or more, not {journal_body_bytes}")
        self.ctx.shared.journal_body_bytes = journal_body_bytes
        self._buckets = buckets
        self._slots = trio.Semaphore(settings.limits.max_connections)
        self._accepting = trio.CancelScope()

    def reload(self, settings: Settings, access_log: Callable[[AccessRecord], None]) -> None:
        """Requests that start from now on use ``settings`` and log through ``access_log``;
        requests in flight finish with what they took (`ProxyContext.now`). The caller keeps
        the restart-only keys (`_reload.applicable`); the pool and the resolver take the new
        timeouts at their next use. Rate limits unchanged keep their buckets.

        Hooks are loaded first: one that fails raises `HookLoadError` and nothing changes.
        The old hooks' lifespans are cancelled; requests in flight keep the hooks they took."""
        old = self.ctx.now()
        hooks = self._load_hooks(settings, old.hooks)
        self.pool.limits = replace(_pool_limits(settings), size=self.pool.limits.size)
        self.pool.resolver.retime(
            ttl_s=settings.upstream.dns_ttl_s,
            negative_ttl_s=settings.upstream.dns_negative_ttl_s,
            lookup_timeout_s=settings.timeouts.upstream_connect_s,
        )
        self.settings = settings
        self.ctx.shared.current = replace(
            old,
            settings=settings,
            log_access=self._sink(self.ctx.metrics, access_log),
            forwarding=_forwarding(settings),
            rule_engine=RuleEngine(
                settings.rules,
                buckets=old.rule_engine.keeping_buckets(self._buckets),
                faults=old.rule_engine.keeping_faults(),
            ),
            hooks=hooks,
        )
        if old.hooks is not None:  # its lifespans end when its last request is done
            old.hooks.stop(grace_s=settings.timeouts.drain_s)
        if hooks is not None and self._nursery is not None:
            self._nursery.start_soon(hooks.run_lifespans)
            self._start_watch(self._nursery, hooks)

    def _start_watch(self, nursery: trio.Nursery, hooks: HookSet) -> None:
        if not self._watching:
            self._watching = True
            nursery.start_soon(hooks.watch.run)

    def _load_hooks(self, settings: Settings, old: HookSet | None) -> HookSet | None:
        if not settings.rules.has_hooks:
            return None  # no hook rule: the hook machinery is not even imported
        from ._hooks import HookSet

        previous = old or self._last_hooks
        watch = previous.watch if previous is not None else None
        self._last_hooks = HookSet.load(
            settings.rules, embedded=self._embedded_hooks, stats=self.hook_stats, watch=watch
        )
        return self._last_hooks

    def _sink(
        self, metrics: RequestMetrics, access_log: Callable[[AccessRecord], None]
    ) -> Callable[[AccessRecord], None]:
        sink = observing(metrics, access_log) if self._counting else access_log
        return recording(self.journal, sink) if self.journal is not None else sink

    @property
    def faults(self) -> FaultTable:
        """The faults added while running; every context version shares them."""
        return self.ctx.shared.faults

    @property
    def pool(self) -> UpstreamPool:
        return self.ctx.pool

    @property
    def draining(self) -> bool:
        """True from ``shutdown()`` on: no longer accepting (the admin /healthz answers 503)."""
        return self._accepting.cancel_called or self.ctx.draining

    def shutdown(self) -> None:
        """Stop accepting and start draining; ``run`` returns when the drain is over."""
        self._accepting.cancel()

    async def run(
        self,
        listeners: Sequence[trio.SocketListener | Listener],
        *,
        admin_listener: trio.SocketListener | None = None,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until drained or cancelled; every listener given is closed on the way out.

        The admin listener is ``admin_listener`` if given (bound beforehand with
        `open_admin_listener`), else bound here when ``settings.admin.listen`` is set.
        """
        sources = [as_listener(listener) for listener in listeners]
        try:
            if admin_listener is None and self.settings.admin.listen:
                # Bound before anything starts, so a bad address fails run() at once
                # (AdminListenError, a ListenError) instead of leaving a proxy half up.
                from ._admin import open_admin_listener

                admin_listener = open_admin_listener(self.settings.admin.listen)
            if admin_listener is not None:
                if not self._counting:
                    raise ValueError(
                        "ProxyServer: an admin listener needs count_requests=True"
                        " (or settings.admin.listen) when the server is built"
                    )
                self.admin_address = admin_listener.socket.getsockname()[:2]
            async with trio.open_nursery() as outer:
                await outer.start(self.pool.run)
                await outer.start(self.ctx.idle.reap)
                await outer.start(self.ctx.origin_waits.reap)
                self._nursery = outer
                hooks = self.ctx.now().hooks
                if hooks is not None:
                    await outer.start(hooks.run_lifespans)
                    self._start_watch(outer, hooks)
                if admin_listener is not None:
                    await outer.start(self._admin_server().serve, admin_listener)
                async with trio.open_nursery() as handlers:
                    with self._accepting:
                        async with trio.open_nursery() as acceptors:
                            for source in sources:
                                acceptors.start_soon(self._accept_loop, source, handlers)
                            task_status.started()
                    _close_listeners(sources)
                    self._drain(handlers)
                outer.cancel_scope.cancel()
        finally:
            _close_listeners(sources)
            if admin_listener is not None:
                admin_listener.socket.close()

    def _admin_server(self) -> AdminServer:
        from ._admin import AdminServer

        collector = ProxyCollector(self.ctx, self._access_log_dropped)
        return AdminServer(
            is_draining=lambda: self.draining,
            upstream=self.upstream,
            metrics_snapshot=collector.snapshot,
            control=self.admin_control(),
        )

    def admin_control(self) -> AdminControl:
        """The harness endpoints (/journal, /faults) on this server's journal and faults: its
        admin listener's, or its supervisor's, which relays them to every worker."""
        from ..config._faultconfig import parse_runtime_fault
        from ..core._admincontrol import AdminControl

        return AdminControl(
            self.journal, self.faults, parse_runtime_fault, self.settings.admin.faults
        )

    def _drain(self, handlers: trio.Nursery) -> None:
        open_now = self.ctx.stats.connections_open
        log.info(
            "draining: %d connection(s) open, up to %gs", open_now, self.settings.timeouts.drain_s
        )
        self.ctx.start_draining()
        handlers.cancel_scope.deadline = trio.current_time() + self.settings.timeouts.drain_s

    async def _accept_loop(self, listener: Listener, handlers: trio.Nursery) -> None:
        await accept_forever(
            listener,
            self._slots,
            handlers,
            self._handle,
            name="proxy",
            make_room=self.ctx.close_oldest_idle,
        )

    def _handle(self, transport: Transport) -> Coroutine[None, None, None]:
        # Not a coroutine itself: the connection's task is `serve_connection`'s frame alone
        # (which counts the connection, catches its errors, closes it and frees its slot),
        # one frame less to resume at every wait of every request.
        return serve_connection(transport, self.ctx, self._slots.release)


def _pool_limits(settings: Settings) -> PoolLimits:
    return PoolLimits(
        size=settings.upstream.pool_size,
        idle_timeout_s=settings.upstream.idle_timeout_s,
        connect_timeout_s=settings.timeouts.upstream_connect_s,
        wait_timeout_s=settings.timeouts.pool_wait_s,
        max_response_head_bytes=settings.limits.max_header_bytes,
        max_connections=settings.upstream.max_connections,
        max_age_s=settings.upstream.max_connection_age_s,
        breaker_failures=settings.upstream.breaker_failures,
        breaker_cooldown_s=settings.upstream.breaker_cooldown_s,
    )


def _forwarding(settings: Settings) -> ForwardingRules:
    return ForwardingRules(
        via=settings.forwarding.via_name.encode("ascii"),
        append_x_forwarded_for=settings.forwarding.append_x_forwarded_for,
        trusted_proxies=trusted_networks(settings.forwarding.trusted_proxies),
    )


def _close_listeners(listeners: list[Listener]) -> None:
    for listener in listeners:
        listener.close()  # synchronous: safe under cancellation, idempotent
