"""The ``trioproxy`` command: run the proxy (the container entrypoint), ``validate``, ``demo``."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import partial

import trio

from ._accesslog import AccessRecord, make_formatter
from ._addr import format_host_port, parse_host_port
from ._admin import open_admin_listener
from ._config import ConfigError, load_settings
from ._errors import UpstreamError
from ._h11 import PARSER
from ._listen import ListenError, bind_socket, bound_address
from ._logwriter import AccessLogWriter
from ._server import ProxyServer
from ._settings import Settings
from ._workers import Supervisor, announce_ready, stop_when_supervisor_goes

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
        type=int,
        default=int(env("TRIOPROXY_WORKERS", "1")),
        metavar="N",
        help="worker processes sharing the port with SO_REUSEPORT (default %(default)s)",
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
        settings = load_settings(args.config_dir)
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("config: %s", problem)
        return 2
    reuse_port = args.workers > 1 or os.environ.get("TRIOPROXY_REUSE_PORT") == "1"
    try:
        sock = bind_socket(*listen, reuse_port=reuse_port)
    except ListenError as exc:
        log.error("%s (choose another address with --listen HOST:PORT)", exc)
        return 1
    if args.workers > 1:
        if settings.admin.listen:
            log.error(
                "config: admin.listen works with one worker only for now (each worker would "
                "need its own admin port); drop --workers or the [admin] listener"
            )
            sock.close()
            return 2
        return _supervise(args, sock, settings)
    admin = None
    if settings.admin.listen:
        try:
            admin = open_admin_listener(settings.admin.listen)
        except ListenError as exc:
            log.error("%s", exc)
            sock.close()
            return 1
    listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
    run_with_access_log(
        settings, partial(run_proxy, settings, [listener], upstream, admin_listener=admin)
    )
    log.info("stopped")
    return 0


def _supervise(args: argparse.Namespace, probe: socket.socket, settings: Settings) -> int:
    """The parent of ``--workers N``: the probe listener found the port (and that it can be
    bound); each worker binds its own with SO_REUSEPORT, so the probe goes."""
    address = bound_address(probe)
    probe.close()
    worker_argv = [
        f"--listen={address}",
        f"--upstream={args.upstream}",
        f"--config-dir={args.config_dir}",
        f"--log-level={args.log_level}",
    ]
    os.environ["TRIOPROXY_REUSE_PORT"] = "1"
    supervisor = Supervisor(worker_argv, args.workers, stop_timeout_s=settings.timeouts.drain_s + 5)

    def ready() -> None:
        log.info("listening on %s, upstream %s (%d workers)", address, args.upstream, args.workers)

    status = trio.run(supervisor.run, ready)
    log.info("stopped")
    return status


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


def access_log_sink(settings: Settings, writer: AccessLogWriter) -> Callable[[AccessRecord], None]:
    render = make_formatter(settings.access_log.format, settings.access_log.fields)

    def sink(record: AccessRecord) -> None:
        writer.write(render(record))

    return sink


async def run_proxy(
    settings: Settings,
    listeners: list[trio.SocketListener],
    upstream: tuple[str, int],
    access_log: Callable[[AccessRecord], None],
    access_log_dropped: Callable[[], int] | None = None,
    *,
    admin_listener: trio.SocketListener | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT, then drain; a second signal stops at once."""
    server = ProxyServer(settings, upstream, access_log, access_log_dropped=access_log_dropped)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
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
            announce_ready()
            nursery.start_soon(_stop_on_signals, signals, server, nursery.cancel_scope)
            nursery.start_soon(stop_when_supervisor_goes, server.shutdown)
            await _wait_for_upstream_name(server)


async def _stop_on_signals(
    signals: AsyncIterator[int], server: ProxyServer, everything: trio.CancelScope
) -> None:
    async for signum in signals:
        if everything.cancel_called:
            break
        log.info("%s: stopping", signal.Signals(signum).name)
        server.shutdown()
        everything.deadline = trio.current_time() + server.settings.timeouts.drain_s + 1
        async for again in signals:
            log.info("%s again: stopping now", signal.Signals(again).name)
            everything.cancel()
            return


async def _wait_for_upstream_name(server: ProxyServer) -> None:
    """Say at startup whether the upstream resolves; not fatal, requests get 502 until it does."""
    with contextlib.suppress(UpstreamError):  # the resolver logs the warning
        deadline = trio.current_time() + server.settings.timeouts.upstream_connect_s
        await server.pool.resolver.resolve(deadline)
