"""The ``trioproxy`` command: run the proxy (the container entrypoint), ``validate``, ``config``,
``demo``."""

from __future__ import annotations

import argparse
import logging
import marshal
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, NoReturn

# Neither trio, h11 nor the configuration loader here: the supervisor of --workers N never
# imports them (`_run` does, for one process; `_confcheck` checks the supervisor's
# configuration).
from ._addr import format_host_port
from ._bind import ListenError, bind_socket, socket_address
from ._cpus import auto_workers
from ._diagnostics import FailureAggregator, JsonFormatter, TextFormatter
from ._lean import defer_unused_imports, trim
from ._options import OPTIONS, OptionError, parser_problem, resolve
from ._version import __version__

if TYPE_CHECKING:
    from ._settings import Settings

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
    problem = parser_problem(os.environ.get("TRIOPROXY_PARSER", "auto"))
    if problem:
        sys.stderr.write(f"{parser.prog}: {problem}\n")
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


def load_config(config_dir: str, *, explicit: bool) -> Settings | None:
    """The settings, or None after one line per problem; a named directory must exist."""
    from ._config import ConfigError, load_settings

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
    args.config_dir_explicit = "config_dir" in explicit
    if args.workers is None:  # auto: the CPUs this process may use (affinity, cgroup quota)
        args.workers = auto_workers()
    if args.workers > 1:
        return _supervise(args)
    settings = _own_settings(args)
    if settings is None:
        return 2
    if not args.log_format:  # neither flag nor variable: the configuration's [diagnostics]
        args.log_format = settings.diagnostics.format
        configure_diagnostics(args.log_level, args.log_format)
    try:
        sock = bind_socket(*args.listen, reuse_port=os.environ.get("TRIOPROXY_REUSE_PORT") == "1")
    except ListenError as exc:
        log.error("%s (choose another address with --listen HOST:PORT)", exc)
        return 1
    defer_unused_imports()  # before trio is imported (_lean)
    from ._run import run_single

    return run_single(args, sock, settings, args.upstream)


def _own_settings(args: argparse.Namespace) -> Settings | None:
    """A worker runs what its supervisor runs (the bytes it was handed); a process on its own
    loads its configuration directory. None after one line per problem."""
    from ._channel import worker_config

    given = worker_config()
    if given is None:
        return load_config(args.config_dir, explicit=args.config_dir_explicit)
    from ._config import ConfigError, settings_from_bytes

    try:
        return settings_from_bytes(given[1], file=given[0])
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("config: %s", problem)
        return None


def _supervise(args: argparse.Namespace) -> int:
    """The parent of ``--workers N``. A probe listener finds the port (and that it can be
    bound); each worker binds its own with SO_REUSEPORT, so the probe goes."""
    from ._sharedbuckets import create
    from ._superadmin import SupervisorAdmin
    from ._supervisor import Config, Reloaded, Supervisor

    count = args.workers
    if args.config_dir_explicit and not os.path.isdir(args.config_dir):
        log.error("config: %s: no such directory", args.config_dir)
        return 2
    checked = _confcheck(args.config_dir, args.log_format)
    if checked is None:
        return 2
    file, raw, admin_listen, drain_s, _, _, diagnostics_format = checked
    if not args.log_format:  # neither flag nor variable: the configuration's [diagnostics]
        args.log_format = diagnostics_format
        configure_diagnostics(args.log_level, args.log_format)
    try:
        probe = bind_socket(*args.listen, reuse_port=True)
    except ListenError as exc:
        log.error("%s (choose another address with --listen HOST:PORT)", exc)
        return 1
    address = socket_address(probe)
    admin_listener = None
    if admin_listen:
        from ._adminbind import bind_admin_socket

        try:
            admin_listener = bind_admin_socket(admin_listen)
        except ListenError as exc:
            log.error("%s", exc)
            probe.close()
            return 1
    probe.close()
    upstream = format_host_port(*args.upstream)
    worker_argv = [
        f"--listen={address}",
        f"--upstream={upstream}",
        f"--config-dir={args.config_dir}",
        f"--log-level={args.log_level}",
        f"--log-format={args.log_format}",
    ]
    os.environ["TRIOPROXY_REUSE_PORT"] = "1"
    # One rate-limit table for all the workers: a client has one bucket, whoever serves it.
    buckets_fd = create()
    os.environ["TRIOPROXY_BUCKETS_FD"] = str(buckets_fd)

    def reload() -> Reloaded | None:
        # Checked once here; every worker is then handed the same bytes.
        state = (raw, supervisor.config.raw)  # started with, running now
        checked = _confcheck(args.config_dir, args.log_format, state)
        if checked is None:
            return None
        file, new_raw, _, _, line, warn, _ = checked
        level = logging.WARNING if warn else logging.INFO
        return Config(file, new_raw), partial(log.log, level, "%s", line)

    supervisor = Supervisor(
        worker_argv,
        count,
        stop_timeout_s=drain_s + 5,
        config=Config(file, raw),
        reload=reload,
        extra_fds=(buckets_fd,),
    )

    def metrics() -> bytes:
        from ._metrics import MetricsSnapshot, exposition, merge_snapshots

        snapshots = [MetricsSnapshot.from_tuple(s) for s in supervisor.snapshots()]
        workers = sum(w.accepting for w in list(supervisor.workers.values()))
        extra = (("gauge", "trioproxy_workers", "Worker processes accepting now", workers),)
        return exposition(merge_snapshots(snapshots, extra))

    admin = None
    if admin_listener is not None:
        server = SupervisorAdmin(
            admin_listener,
            healthy=lambda: supervisor.healthy,
            upstream=args.upstream,
            metrics=metrics,
        )
        admin = (admin_listener, server.serve_one)
        where = format_host_port(*admin_listener.getsockname()[:2])
        log.info("admin listener on %s (/healthz, /readyz, /metrics)", where)

    def ready() -> None:
        trim()
        log.info("listening on %s, upstream %s (%d workers)", address, upstream, count)

    try:
        status = supervisor.run(ready, admin=admin)
    finally:
        if admin_listener is not None:
            admin_listener.close()
        os.close(buckets_fd)
    log.info("stopped")
    return status


def _confcheck(
    config_dir: str, log_format: str, state: tuple[Any, ...] | None = None
) -> tuple[Any, ...] | None:
    """Check the configuration in a process of its own (`_confcheck`), which writes any
    problems to stderr; None if it is invalid (or the check itself failed)."""
    try:
        result = subprocess.run(
            [sys.executable, "-m", "trioproxy._confcheck", config_dir, log_format],
            input=marshal.dumps(state) if state is not None else b"",
            stdout=subprocess.PIPE,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.error("config: could not be checked: %s", exc)
        return None
    if result.returncode != 0:
        return None
    try:
        answer: tuple[Any, ...] = marshal.loads(result.stdout)
    except (ValueError, EOFError, TypeError) as exc:
        log.error("config: could not be checked: %s", exc)
        return None
    return answer


def check_config(config_dir: str) -> tuple[str, bytes | None, Settings] | None:
    """A reload's configuration, read and checked as ``validate`` does it; None (after one
    line per problem and the verdict on stderr) when it is invalid."""
    from ._config import ConfigError, read_config, settings_from_bytes
    from ._reload import rejected
    from ._settings import Settings

    file = str(config_dir)
    try:
        file, raw = read_config(config_dir)
        return file, raw, Settings() if raw is None else settings_from_bytes(raw, file=file)
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("config: %s", problem)
        log.error("%s", rejected(file, len(exc.problems)))
        return None
