"""Running one proxy process (alone, or as a worker of ``--workers N``) until it is stopped.

The command's single-process path after `_cli` has parsed its arguments, loaded the settings
and bound the port: the access-log writer, the server, the signals (SIGTERM/SIGINT drain,
SIGHUP reloads) and, in a worker, the channel to the supervisor.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from functools import partial

import trio

from ..config._config import ConfigError, settings_from_bytes
from ..config._reload import applicable, changed_keys, missing, rejected, summary
from ..config._settings import Settings
from ..core._accesslog import AccessRecord, make_logger
from ..core._addr import format_host_port
from ..core._errors import UpstreamError
from ..core._ruleengine import BucketsFactory, local_buckets
from ..engine._bind import ListenError
from ..engine._busypoll import BusyPoll, busy_poll
from ..engine._collector import ProxyCollector
from ..engine._diagnostics import AGGREGATE_INTERVAL_S, FailureAggregator
from ..engine._h11 import PARSER
from ..engine._listen import bound_address
from ..engine._server import ProxyServer
from ._command import check_config, diagnostic_line, log
from ._gcsettle import settle_gc, thaw
from ._lean import trim
from ._logwriter import AccessLogWriter, LoopLines
from ._memlimit import fitted
from ._workers import Channel, answer_off_loop, serve_supervisor, worker_channel

__all__ = ["access_log_sink", "run_proxy", "run_single", "run_with_access_log"]


def run_single(
    args: argparse.Namespace, sock: socket.socket, settings: Settings, upstream: tuple[str, int]
) -> int:
    """Serve on ``sock`` until stopped; the exit status."""
    channel = worker_channel()  # a worker of --workers N: the supervisor serves the admin
    admin = None
    if settings.admin.listen and channel is None:
        try:
            from ..engine._admin import open_admin_listener

            admin = open_admin_listener(settings.admin.listen)
        except ListenError as exc:
            log.error("%s", exc)
            sock.close()
            return 1
    listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
    # A SIGHUP before the signal receiver is in place, or after the drain, is ignored, not
    # fatal (config-sync tools send them in storms; the process would exit killed).
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    run_with_access_log(
        settings,
        partial(
            run_proxy,
            settings,
            [listener],
            upstream,
            admin_listener=admin,
            config_dir=args.config_dir,
            channel=channel,
            buckets=_shared_buckets(),
        ),
    )
    log.info("stopped")
    return 0


def _shared_buckets() -> BucketsFactory:
    """A worker's rate-limit buckets: the supervisor's shared table (`_sharedbuckets`), or,
    in a process of its own, its own memory."""
    fd = os.environ.pop("TRIOPROXY_BUCKETS_FD", "")
    if not fd:
        return local_buckets
    from ..core._sharedbuckets import SharedTable

    return SharedTable(int(fd)).buckets


def run_with_access_log(
    settings: Settings,
    main: Callable[[Callable[[AccessRecord], None], Callable[[], int]], Awaitable[None]],
) -> None:
    """``trio.run(main, sink, dropped)``: access lines go to stdout through the writer
    thread; ``dropped()`` counts the lines it had to drop (for /metrics)."""
    # Its complaints go through the queued diagnostics: closing never waits on stderr.
    writer = AccessLogWriter(diagnostic_line=diagnostic_line, diagnose=partial(log.warning, "%s"))
    writer.start()
    lines = LoopLines(writer)  # written from the loop while stdout takes them at once
    try:
        sink = access_log_sink(settings, lines)
        trio.run(_with_flusher, lines, main, sink, lambda: writer.dropped, clock=PlainClock())
    finally:
        lines.close()
        writer.close(timeout_s=2.0)


class PlainClock(trio.abc.Clock):
    """trio's default clock (`time.perf_counter`) without its random offset, so that a reading
    is a call of C, not of a Python method adding the offset: the proxy reads the clock about
    four times a request. (trio adds the offset to catch code that mixes its time with
    perf_counter's; here the one place that relates them, `_workers`, measures it.)"""

    current_time = staticmethod(time.perf_counter)

    def start_clock(self) -> None:
        pass

    def deadline_to_sleep_time(self, deadline: float) -> float:
        return deadline - time.perf_counter()


async def _with_flusher(
    lines: LoopLines,
    main: Callable[[Callable[[AccessRecord], None], Callable[[], int]], Awaitable[None]],
    sink: Callable[[AccessRecord], None],
    dropped: Callable[[], int],
) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_flush_access_lines, lines)
        await main(sink, dropped)
        nursery.cancel_scope.cancel()


async def _flush_access_lines(lines: LoopLines) -> None:
    """Write each batch of access lines at most ``gather_s`` after its first line (a full
    batch is written at once); asleep while there is none."""
    first_line = trio.lowlevel.ParkingLot()
    lines.wake = first_line.unpark
    while True:
        if not lines.pending:
            await first_line.park()
        await trio.sleep(lines.gather_s)
        lines.flush()


def access_log_sink(settings: Settings, writer: AccessLogWriter | LoopLines) -> AccessLogSink:
    return AccessLogSink(settings, writer)


class AccessLogSink(partial[None]):
    """Renders each record in the configured format and hands the line to the writer.

    A `functools.partial` of the generated renderer that writes its own line
    (`make_logger`): calling it runs no Python of its own, one frame less per request.
    """

    _writer: AccessLogWriter | LoopLines

    def __new__(cls, settings: Settings, writer: AccessLogWriter | LoopLines) -> AccessLogSink:
        log = settings.access_log
        sink = super().__new__(cls, make_logger(log.format, log.fields, writer.write))
        sink._writer = writer
        return sink

    def with_settings(self, settings: Settings) -> AccessLogSink:
        """The same writer, the format and fields of ``settings`` (a reload)."""
        return AccessLogSink(settings, self._writer)


async def run_proxy(
    settings: Settings,
    listeners: list[trio.SocketListener],
    upstream: tuple[str, int],
    access_log: Callable[[AccessRecord], None],
    access_log_dropped: Callable[[], int] | None = None,
    *,
    admin_listener: trio.SocketListener | None = None,
    config_dir: str | None = None,
    channel: Channel | None = None,
    buckets: BucketsFactory = local_buckets,
) -> None:
    """Serve until SIGTERM or SIGINT, then drain; a second signal stops at once. SIGHUP
    reloads ``config_dir`` (a worker is handed its configuration through ``channel``)."""
    # Counted when someone reads the numbers: this process's admin listener, or a worker's
    # supervisor, which asks for them over the channel.
    counting = bool(settings.admin.listen) or admin_listener is not None
    if channel is not None:  # a worker: the supervisor owns the admin listener
        settings = replace(settings, admin=replace(settings.admin, listen=""))
    server = ProxyServer(
        settings,
        upstream,
        access_log,
        access_log_dropped=access_log_dropped,
        buckets=buckets,
        count_requests=counting,
    )
    reloader = _Reloader(server, access_log, busy_poll(None, settings.tuning.busy_poll_us))
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async with trio.open_nursery() as nursery:

            async def serve_then_stop(*, task_status: trio.TaskStatus[None]) -> None:
                await server.run(listeners, admin_listener=admin_listener, task_status=task_status)
                nursery.cancel_scope.cancel()  # drained: stop listening for signals

            await nursery.start(serve_then_stop)
            if server.admin_address:  # before the ready line: ready means all of it is
                admin = format_host_port(*server.admin_address)
                log.info("admin listener on %s (/healthz, /readyz, /metrics)", admin)
            log.debug("parser: %s", PARSER)
            addresses = ", ".join(bound_address(listener) for listener in listeners)
            # Settled before the ready line, not after: who reads the memory at ready (a
            # benchmark, an orchestrator) reads it trimmed, not racing the trim.
            trim()
            settle_gc()  # after trim's collection: only startup's live objects frozen
            log.info("listening on %s, upstream %s", addresses, format_host_port(*upstream))
            reload = None
            if config_dir is not None:
                reloads = _Reloads(partial(reloader.from_disk, config_dir))
                nursery.start_soon(reloads.run)
                reload = reloads.request
            nursery.start_soon(_stop_on_signals, signals, server, nursery.cancel_scope, reload)
            nursery.start_soon(_flush_failures)
            if channel is not None:
                collector = ProxyCollector(server.ctx, access_log_dropped)
                nursery.start_soon(
                    partial(
                        serve_supervisor,
                        channel,
                        metrics=lambda: collector.snapshot().as_tuple(),
                        reload=reloader.from_bytes,
                        shutdown=server.shutdown,
                        control=partial(answer_off_loop, server.admin_control()),
                    )
                )
            await _wait_for_upstream_name(server)


class _Reloader:
    """Applies a new configuration to a running server (SIGHUP, or the supervisor's word)."""

    def __init__(
        self,
        server: ProxyServer,
        access_log: Callable[[AccessRecord], None],
        busy: BusyPoll | None = None,
    ) -> None:
        self._server = server
        self._access_log = access_log
        self._busy = busy  # (`busy_poll`'s, retuned at each reload)

    def apply(self, new: Settings) -> list[str]:
        """Swap in ``new`` (restart-only keys kept); the keys that changed."""
        server = self._server
        changed = changed_keys(server.settings, new)
        settings = applicable(server.settings, new)
        renew = getattr(self._access_log, "with_settings", None)  # embedders' sinks stay
        server.reload(settings, renew(settings) if renew is not None else self._access_log)
        if "tuning.busy_poll_us" in changed:
            self._busy = busy_poll(self._busy, settings.tuning.busy_poll_us)
        return changed

    async def from_disk(self, config_dir: str) -> None:
        """Read and check the file in a thread (the loop serves on meanwhile), then apply it,
        unless the file is gone (`_reload.missing`) or the server has begun to drain. A hook
        file that fails to load rejects the reload: the old configuration keeps serving."""
        from ..hooks._load import HookLoadError

        checked = await trio.to_thread.run_sync(check_config, config_dir, abandon_on_cancel=True)
        if checked is None or self._server.draining:
            return
        file, raw, new = checked
        if raw is None and (gone := missing(file, self._server.settings)) is not None:
            log.warning("%s", gone)
            return
        try:
            changed = self.apply(fitted(new, raw)[0])  # as at startup (_memlimit)
        except HookLoadError as exc:
            log.error("config: %s", exc)
            log.error("%s", rejected(file, 1))
            return
        thaw()  # the replaced configuration may hold cycles (`_gcsettle`)
        warn, line = summary(file, changed)
        log.log(logging.WARNING if warn else logging.INFO, "%s", line)

    async def from_bytes(self, file: str, raw: bytes | None) -> str:
        """A worker's reload (checked by the supervisor already): "" or what went wrong.
        Parsed in a thread: a thousand rules take a third of a second."""
        from ..hooks._load import HookLoadError

        try:
            new = await trio.to_thread.run_sync(_settings, file, raw, abandon_on_cancel=True)
        except ConfigError as exc:
            return "; ".join(str(problem) for problem in exc.problems)
        try:
            self.apply(fitted(new, raw)[0])  # as at startup, so an unchanged file changes nothing
        except HookLoadError as exc:  # checked by the supervisor, but imports can differ
            return str(exc)
        thaw()  # the replaced configuration may hold cycles (`_gcsettle`)
        return ""


def _settings(file: str, raw: bytes | None) -> Settings:
    return Settings() if raw is None else settings_from_bytes(raw, file=file)


class _Reloads:
    """SIGHUPs coalesce: one reload at a time, and any number of requests meanwhile make one
    more, which reads the file as it is then (config-sync tools send one per changed file)."""

    def __init__(self, reload: Callable[[], Awaitable[None]]) -> None:
        self._reload = reload
        self._wanted = trio.Event()

    def request(self) -> None:
        self._wanted.set()

    async def run(self) -> None:
        while True:
            await self._wanted.wait()
            self._wanted = trio.Event()
            await self._reload()


async def _stop_on_signals(
    signals: AsyncIterator[int],
    server: ProxyServer,
    everything: trio.CancelScope,
    reload: Callable[[], None] | None = None,
) -> None:
    async for signum in signals:
        if everything.cancel_called:
            break
        if signum == signal.SIGHUP:
            if reload is not None and not server.draining:
                reload()
            continue
        log.info("%s: stopping", signal.Signals(signum).name)
        server.shutdown()
        everything.deadline = trio.current_time() + server.settings.timeouts.drain_s + 1
        async for again in signals:
            if again == signal.SIGHUP:
                continue
            log.info("%s again: stopping now", signal.Signals(again).name)
            everything.cancel()
            return


async def _flush_failures() -> None:
    """Summarise aggregated failures once per interval, and once more at the end."""
    aggregators = [f for h in log.handlers for f in h.filters if isinstance(f, FailureAggregator)]
    try:
        while True:
            await trio.sleep(AGGREGATE_INTERVAL_S)
            for aggregator in aggregators:
                aggregator.flush()
    finally:
        for aggregator in aggregators:
            aggregator.flush(final=True)


async def _wait_for_upstream_name(server: ProxyServer) -> None:
    """Say at startup whether the upstream resolves; not fatal, requests get 502 until it does."""
    with contextlib.suppress(UpstreamError):  # the resolver logs the warning
        deadline = trio.current_time() + server.settings.timeouts.upstream_connect_s
        await server.pool.resolver.resolve(deadline)
