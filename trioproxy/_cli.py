"""The ``trioproxy`` command: run the proxy (the container entrypoint), ``validate``, ``demo``."""

from __future__ import annotations

# ruff: noqa: E402  (the first import must run before trio is imported)
from ._lean import defer_unused_imports, trim

defer_unused_imports()

import argparse
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import replace
from functools import partial

import trio

from ._accesslog import AccessRecord, make_formatter
from ._addr import format_host_port, parse_host_port
from ._config import ConfigError, load_settings, read_config, settings_from_bytes
from ._cpus import auto_workers
from ._errors import UpstreamConnectError
from ._h11 import PARSER
from ._listen import ListenError, bind_socket, bound_address
from ._logwriter import AccessLogWriter
from ._metrics import MetricsSnapshot, ProxyCollector, merge_snapshots
from ._reload import applicable, changed_keys, rejected, summary
from ._rules import BucketsFactory, local_buckets
from ._server import ProxyServer
from ._settings import Admin, Settings
from ._workers import (
    Channel,
    Config,
    Reloaded,
    Supervisor,
    serve_supervisor,
    worker_channel,
    worker_config,
)

log = logging.getLogger("trioproxy")

# What the platform contract fixes: public HTTP on port 80, upstream next-hop:80.
DEFAULT_LISTEN = "0.0.0.0:80"
DEFAULT_UPSTREAM = "next-hop:80"
DEFAULT_CONFIG_DIR = "/opt/proxy_config"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["validate"]:
        from ._validate import main as validate_main

        return validate_main(args[1:])
    if args[:1] == ["demo"]:
        from ._demo import main as demo_main

        return demo_main(args[1:])
    return run_main(args)


def build_parser(
    prog: str = "trioproxy", *, listen_default: str = DEFAULT_LISTEN
) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="HTTP/1.1 reverse proxy. Each option can also be set as TRIOPROXY_<NAME>.",
        epilog="Subcommands: 'trioproxy validate [DIR]' checks a configuration directory; "
        "'trioproxy demo' runs the proxy in front of a built-in demo origin.",
    )
    env = os.environ.get
    parser.add_argument(
        "--listen",
        default=env("TRIOPROXY_LISTEN", listen_default),
        metavar="HOST:PORT",
        help="public address (default %(default)s; port 0 picks a free port)",
    )
    parser.add_argument(
        "--upstream",
        default=env("TRIOPROXY_UPSTREAM", DEFAULT_UPSTREAM),
        metavar="HOST:PORT",
        help="next hop, plain HTTP (default %(default)s)",
    )
    parser.add_argument(
        "--config-dir",
        default=env("TRIOPROXY_CONFIG_DIR", DEFAULT_CONFIG_DIR),
        metavar="DIR",
        help="directory holding trioproxy.toml (default %(default)s)",
    )
    parser.add_argument(
        "--workers",
        default=env("TRIOPROXY_WORKERS", "1"),
        metavar="N",
        help="worker processes sharing the port with SO_REUSEPORT, or 'auto': one per CPU "
        "this process may use (affinity and cgroup quota) (default %(default)s)",
    )
    parser.add_argument(
        "--log-level",
        default=env("TRIOPROXY_LOG_LEVEL", "info"),
        choices=["debug", "info", "warning", "error"],
        help="stderr diagnostics level (default %(default)s)",
    )
    return parser


def configure_diagnostics(level: str) -> None:
    """Diagnostics go to stderr, one line each with a level; stdout is the access log's."""
    handler = logging.StreamHandler(sys.stderr)
    name = os.environ.get("TRIOPROXY_WORKER_NAME")  # set by the --workers supervisor
    tag = f"trioproxy[{name}]" if name else "trioproxy"
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s %(levelname)s {tag}: %(message)s", "%Y-%m-%dT%H:%M:%S%z")
    )
    log.handlers[:] = [handler]
    log.setLevel(level.upper())
    log.propagate = False


def run_main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    configure_diagnostics(args.log_level)
    workers = workers_count(args.workers)
    if workers is None:
        log.error(
            "--workers: expected a number of processes (1 or more) or 'auto', not %r", args.workers
        )
        return 2
    try:
        listen = parse_host_port(args.listen)
    except ValueError as exc:
        log.error("--listen: %s", exc)
        return 2
    try:
        upstream = parse_host_port(args.upstream, default_port=80)
    except ValueError as exc:
        log.error("--upstream: %s", exc)
        return 2
    try:
        given = worker_config()  # a worker runs what its supervisor runs
        settings = (
            load_settings(args.config_dir)
            if given is None
            else settings_from_bytes(given[1], file=given[0])
        )
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("config: %s", problem)
        return 2
    reuse_port = workers > 1 or os.environ.get("TRIOPROXY_REUSE_PORT") == "1"
    try:
        sock = bind_socket(*listen, reuse_port=reuse_port)
    except ListenError as exc:
        log.error("%s (choose another address with --listen HOST:PORT)", exc)
        return 1
    if workers > 1:
        return _supervise(args, sock, settings, workers, upstream)
    channel = worker_channel()  # a worker of --workers N: the supervisor serves the admin
    admin = None
    if settings.admin.listen and channel is None:
        try:
            from ._admin import open_admin_listener

            admin = open_admin_listener(settings.admin.listen)
        except ListenError as exc:
            log.error("%s", exc)
            sock.close()
            return 1
    listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
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
    from ._sharedbuckets import SharedTable

    return SharedTable(int(fd)).buckets


def workers_count(text: str) -> int | None:
    """``--workers``: a count, or ``auto`` (`_cpus.auto_workers`); None if neither."""
    if text.strip().lower() == "auto":
        return auto_workers()
    try:
        count = int(text)
    except ValueError:
        return None
    return count if count >= 1 else None


def _supervise(
    args: argparse.Namespace,
    probe: socket.socket,
    settings: Settings,
    count: int,
    upstream: tuple[str, int],
) -> int:
    """The parent of ``--workers N``: the probe listener found the port (and that it can be
    bound); each worker binds its own with SO_REUSEPORT, so the probe goes."""
    address = bound_address(probe)
    admin_listener = None
    if settings.admin.listen:
        try:
            from ._admin import open_admin_listener

            admin_listener = open_admin_listener(settings.admin.listen)
        except ListenError as exc:
            log.error("%s", exc)
            probe.close()
            return 1
    probe.close()
    worker_argv = [
        f"--listen={address}",
        f"--upstream={args.upstream}",
        f"--config-dir={args.config_dir}",
        f"--log-level={args.log_level}",
    ]
    os.environ["TRIOPROXY_REUSE_PORT"] = "1"
    # One rate-limit table for all the workers: a client has one bucket, whoever serves it.
    from ._sharedbuckets import create

    buckets_fd = create()
    os.environ["TRIOPROXY_BUCKETS_FD"] = str(buckets_fd)
    current = [settings]

    def reload() -> Reloaded | None:
        # Checked once here; every worker is then handed the same bytes.
        checked = _check(args.config_dir)
        if checked is None:
            return None
        file, raw, new = checked
        changed = changed_keys(current[0], new)
        current[0] = applicable(current[0], new)
        warn, line = summary(file, changed)
        return Config(file, raw), partial(log.log, logging.WARNING if warn else logging.INFO, line)

    try:
        initial = Config(*read_config(args.config_dir))
    except ConfigError:  # it was readable a moment ago; the workers will say what is wrong
        initial = Config("", None)
    supervisor = Supervisor(
        worker_argv,
        count,
        stop_timeout_s=settings.timeouts.drain_s + 5,
        config=initial,
        reload=reload,
        extra_fds=(buckets_fd,),
    )

    async def admin(nursery: trio.Nursery) -> None:
        assert admin_listener is not None

        async def metrics() -> MetricsSnapshot:
            snapshots = [MetricsSnapshot.from_tuple(s) for s in await supervisor.snapshots()]
            workers = sum(w.accepting for w in supervisor.workers.values())
            extra = (("gauge", "trioproxy_workers", "Worker processes accepting now", workers),)
            return merge_snapshots(snapshots, extra)

        from ._admin import AdminServer

        server = AdminServer(
            is_draining=lambda: not supervisor.healthy, upstream=upstream, metrics_snapshot=metrics
        )
        await nursery.start(server.serve, admin_listener)
        where = format_host_port(*admin_listener.socket.getsockname()[:2])
        log.info("admin listener on %s (/healthz, /readyz, /metrics)", where)

    def ready() -> None:
        log.info("listening on %s, upstream %s (%d workers)", address, args.upstream, count)

    async def supervise() -> int:
        try:
            return await supervisor.run(ready, admin=admin if admin_listener else None)
        finally:
            if admin_listener is not None:
                admin_listener.socket.close()

    status = trio.run(supervise)
    log.info("stopped")
    return status


def _check(config_dir: str) -> tuple[str, bytes | None, Settings] | None:
    """A reload's configuration, read and checked as ``validate`` does it; None (after one
    line per problem and the verdict on stderr) when it is invalid."""
    file = str(config_dir)
    try:
        file, raw = read_config(config_dir)
        return file, raw, Settings() if raw is None else settings_from_bytes(raw, file=file)
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("config: %s", problem)
        log.error("%s", rejected(file, len(exc.problems)))
        return None


def run_with_access_log(
    settings: Settings,
    main: Callable[[Callable[[AccessRecord], None], Callable[[], int]], Awaitable[None]],
) -> None:
    """``trio.run(main, sink, dropped)``: access lines go to stdout through the writer
    thread; ``dropped()`` counts the lines it had to drop (for /metrics)."""
    writer = AccessLogWriter()
    writer.start()
    try:
        trio.run(main, access_log_sink(settings, writer), lambda: writer.dropped)
    finally:
        writer.close(timeout_s=2.0)


def access_log_sink(settings: Settings, writer: AccessLogWriter) -> AccessLogSink:
    return AccessLogSink(settings, writer)


class AccessLogSink:
    """Renders each record in the configured format and hands the line to the writer."""

    __slots__ = ("_render", "_writer")

    def __init__(self, settings: Settings, writer: AccessLogWriter) -> None:
        self._render = make_formatter(settings.access_log.format, settings.access_log.fields)
        self._writer = writer

    def __call__(self, record: AccessRecord) -> None:
        self._writer.write(self._render(record))

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
    counting = channel is not None and bool(settings.admin.listen)
    if channel is not None:  # a worker: the supervisor owns the admin listener
        settings = replace(settings, admin=Admin())
    server = ProxyServer(
        settings, upstream, access_log, access_log_dropped=access_log_dropped, buckets=buckets
    )
    if counting:
        server.count_requests()  # the supervisor asks for the numbers over the channel
    reloader = _Reloader(server, access_log)
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
            log.info("listening on %s, upstream %s", addresses, format_host_port(*upstream))
            trim()
            reload = partial(reloader.from_disk, config_dir) if config_dir is not None else None
            nursery.start_soon(_stop_on_signals, signals, server, nursery.cancel_scope, reload)
            if channel is not None:
                collector = ProxyCollector(server.ctx, access_log_dropped)
                nursery.start_soon(
                    partial(
                        serve_supervisor,
                        channel,
                        metrics=lambda: collector.snapshot().as_tuple(),
                        reload=reloader.from_bytes,
                        shutdown=server.shutdown,
                    )
                )
            await _wait_for_upstream_name(server)


class _Reloader:
    """Applies a new configuration to a running server (SIGHUP, or the supervisor's word)."""

    def __init__(self, server: ProxyServer, access_log: Callable[[AccessRecord], None]) -> None:
        self._server = server
        self._access_log = access_log

    def apply(self, new: Settings) -> list[str]:
        """Swap in ``new`` (restart-only keys kept); the keys that changed."""
        server = self._server
        changed = changed_keys(server.settings, new)
        settings = applicable(server.settings, new)
        renew = getattr(self._access_log, "with_settings", None)  # embedders' sinks stay
        server.reload(settings, renew(settings) if renew is not None else self._access_log)
        return changed

    def from_disk(self, config_dir: str) -> None:
        checked = _check(config_dir)
        if checked is not None:
            file, _, new = checked
            warn, line = summary(file, self.apply(new))
            log.log(logging.WARNING if warn else logging.INFO, "%s", line)

    def from_bytes(self, file: str, raw: bytes | None) -> str:
        """A worker's reload (checked by the supervisor already): "" or what went wrong."""
        try:
            self.apply(Settings() if raw is None else settings_from_bytes(raw, file=file))
        except ConfigError as exc:
            return "; ".join(str(problem) for problem in exc.problems)
        return ""


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


async def _wait_for_upstream_name(server: ProxyServer) -> None:
    """Say at startup whether the upstream resolves; not fatal, requests get 502 until it does."""
    with contextlib.suppress(UpstreamConnectError):  # the resolver logs the warning
        await server.pool.resolver.resolve()
