"""The ``trioproxy`` command: run the proxy (the container entrypoint), ``validate``, ``config``,
``demo``."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import NoReturn

import trio

from ._accesslog import AccessRecord, make_formatter
from ._addr import format_host_port
from ._admin import open_admin_listener
from ._config import ConfigError, load_settings
from ._diagnostics import AGGREGATE_INTERVAL_S, FailureAggregator, JsonFormatter, TextFormatter
from ._errors import UpstreamError
from ._h11 import PARSER, PARSER_PROBLEM
from ._listen import ListenError, bind_socket, bound_address
from ._logwriter import AccessLogWriter
from ._options import OPTIONS, OptionError, resolve
from ._server import ProxyServer
from ._settings import Settings
from ._version import __version__
from ._workers import Supervisor, announce_ready, stop_when_supervisor_goes

log = logging.getLogger("trioproxy")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["validate"]:
        from ._validate import main as validate_main

        return validate_main(args[1:])
    if args[:1] == ["config"]:
        from ._validate import config_main

        return config_main(args[1:])
    if args[:1] == ["demo"]:
        try:
            from ._demo import main as demo_main
        except ModuleNotFoundError as exc:  # its origin is hypercorn, not a runtime dependency
            needs = (exc.name or "hypercorn").partition(".")[0]
            sys.stderr.write(f"trioproxy demo needs {needs}: pip install 'trioproxy[testing]'\n")
            return 2
        return demo_main(args[1:])
    return run_main(args)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line that says what was wrong."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser(
    prog: str = "trioproxy",
    *,
    options: Sequence[str] | None = None,
    defaults: Mapping[str, str] | None = None,
    what: str = "HTTP/1.1 reverse proxy.",
) -> argparse.ArgumentParser:
    """Flags keep their text (None when absent): `resolve` checks flag and variable alike."""
    parser = _Parser(
        prog=prog,
        description=f"{what} Each option can also be set as TRIOPROXY_<NAME> "
        "(TRIOPROXY_LOG_LEVEL=debug); a flag wins over its variable.",
        epilog="Subcommands: 'trioproxy validate [DIR]' checks a configuration directory; "
        "'trioproxy config [DIR]' prints the effective configuration as TOML; "
        "'trioproxy demo' runs the proxy in front of a built-in demo origin.",
    )
    parser.add_argument("-V", "--version", action="version", version=f"trioproxy {__version__}")
    for option in OPTIONS:
        if options is not None and option.name not in options:
            continue
        default = (defaults or {}).get(option.name, option.default) or "from the configuration"
        parser.add_argument(
            option.flag,
            metavar=option.metavar,
            help=f"{option.help} (default {default}; {option.env})",
        )
    return parser


def parse_options(
    parser: argparse.ArgumentParser, argv: Sequence[str], defaults: Mapping[str, str] | None = None
) -> tuple[argparse.Namespace, set[str]] | None:
    """Flags, then TRIOPROXY_ variables, then defaults; None after a one-line error on stderr."""
    flags = vars(parser.parse_args(argv))
    try:
        values, explicit = resolve(flags, os.environ, defaults=defaults)
    except OptionError as exc:
        sys.stderr.write(f"{parser.prog}: {exc}\n")
        return None
    if PARSER_PROBLEM:
        sys.stderr.write(f"{parser.prog}: {PARSER_PROBLEM}\n")
        return None
    return argparse.Namespace(**values), explicit


def configure_diagnostics(level: str, fmt: str = "") -> None:
    """Diagnostics go to stderr, one line each with a time and a level, as text or JSON;
    stdout is the access log's. Identical upstream failures are aggregated (`_diagnostics`)."""
    handler = logging.StreamHandler(sys.stderr)
    name = os.environ.get("TRIOPROXY_WORKER_NAME", "")  # set by the --workers supervisor
    tag = f"trioproxy[{name}]" if name else "trioproxy"
    handler.setFormatter(JsonFormatter(name) if fmt == "json" else TextFormatter(tag))
    handler.addFilter(FailureAggregator(handler.handle))
    log.handlers[:] = [handler]
    log.setLevel(level.upper())
    log.propagate = False


def diagnostic_line(level: int, message: str) -> str:
    """``message`` rendered as the stderr handler renders a line (for the log writer thread)."""
    record = log.makeRecord(log.name, level, "", 0, message, (), None)
    handler = log.handlers[0] if log.handlers else None
    return handler.format(record) if handler else f"trioproxy: {message}"


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


def load_config(config_dir: str, *, explicit: bool) -> Settings | None:
    """The settings, or None after one line per problem; a named directory must exist."""
    if explicit and not os.path.isdir(config_dir):
        log.error("config: %s: no such directory", config_dir)
        return None
    try:
        return load_settings(config_dir)
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("config: %s", problem)
        return None


def run_main(argv: Sequence[str]) -> int:
    parsed = parse_options(build_parser(), argv)
    if parsed is None:
        return 2
    args, explicit = parsed
    configure_diagnostics(args.log_level, args.log_format)
    listen, upstream = args.listen, args.upstream
    args.config_dir_explicit = "config_dir" in explicit
    settings = load_config(args.config_dir, explicit=args.config_dir_explicit)
    if settings is None:
        return 2
    if not args.log_format:  # neither flag nor variable: the configuration's [diagnostics]
        args.log_format = settings.diagnostics.format
        configure_diagnostics(args.log_level, args.log_format)
    if args.workers is None:  # auto: the process-model work decides; until then one per CPU
        args.workers = os.cpu_count() or 1
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
    upstream = format_host_port(*args.upstream)
    worker_argv = [f"--listen={address}", f"--upstream={upstream}", f"--log-level={args.log_level}"]
    worker_argv.append(f"--log-format={args.log_format}")
    if args.config_dir_explicit:  # else the workers, like the parent, may find no directory
        worker_argv.append(f"--config-dir={args.config_dir}")
    os.environ["TRIOPROXY_REUSE_PORT"] = "1"
    supervisor = Supervisor(worker_argv, args.workers, stop_timeout_s=settings.timeouts.drain_s + 5)

    def ready() -> None:
        log.info("listening on %s, upstream %s (%d workers)", address, upstream, args.workers)

    status = trio.run(supervisor.run, ready)
    log.info("stopped")
    return status


def run_with_access_log(
    settings: Settings,
    main: Callable[[Callable[[AccessRecord], None], Callable[[], int]], Awaitable[None]],
) -> None:
    """``trio.run(main, sink, dropped)``: access lines go to stdout through the writer
    thread; ``dropped()`` counts the lines it had to drop (for /metrics)."""
    writer = AccessLogWriter(diagnostic_line=diagnostic_line)
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
            nursery.start_soon(_flush_failures)
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
