"""The ``trioproxy`` command: run the proxy (the container entrypoint), ``validate``, ``config``,
``demo``."""

from __future__ import annotations

import argparse
import logging
import marshal
import os
import subprocess
import sys
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

# Neither trio, h11 nor the configuration loader here: the supervisor of --workers N never
# imports them (`_run` does, for one process; `_confcheck` checks the supervisor's
# configuration).
from ..config._options import directory_problem
from ..core._addr import format_host_port
from ..engine._bind import ListenError, bind_socket, inherited_socket, socket_address
from ._command import build_parser, configure_diagnostics, load_config, log, parse_options
from ._cpus import auto_workers
from ._lean import defer_unused_imports, trim

if TYPE_CHECKING:
    from ..config._settings import Settings


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["validate"]:
        from ..config._validate import main as validate_main

        return validate_main(args[1:])
    if args[:1] == ["config"]:
        from ..config._validate import config_main
        from ._memlimit import fitted_for_config

        return config_main(args[1:], fit=fitted_for_config)
    if args[:1] == ["demo"]:
        try:
            from ._demo import main as demo_main
        except ModuleNotFoundError as exc:  # its origin is hypercorn, not a runtime dependency
            needs = (exc.name or "hypercorn").partition(".")[0]
            sys.stderr.write(f"trioproxy demo needs {needs}: pip install 'trioproxy[testing]'\n")
            return 2
        return demo_main(args[1:])
    return run_main(args)


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
    owned = _own_settings(args)
    if owned is None:
        return 2
    settings = _fit_memory_limit(*owned)
    if not args.log_format:  # neither flag nor variable: the configuration's [diagnostics]
        args.log_format = settings.diagnostics.format
        configure_diagnostics(args.log_level, args.log_format)
    try:
        sock = inherited_socket() or bind_socket(*args.listen)  # a worker's: its supervisor's
    except ListenError as exc:
        log.error("%s (choose another address with --listen HOST:PORT)", exc)
        return 1
    defer_unused_imports()  # before trio is imported (_lean)
    from ._run import run_single

    return run_single(args, sock, settings, args.upstream)


def _own_settings(args: argparse.Namespace) -> tuple[Settings, bytes | None] | None:
    """A worker runs what its supervisor runs (the bytes it was handed); a process on its own
    loads its configuration directory. The settings and the file's bytes; None after one line
    per problem."""
    from ..config._config import ConfigError, read_config, settings_from_bytes
    from ._channel import worker_config

    given = worker_config()
    if given is None:
        settings = load_config(args.config_dir, explicit=args.config_dir_explicit)
        if settings is None:
            return None
        try:
            return settings, read_config(args.config_dir)[1]
        except ConfigError:  # gone since: only whether it sets a key is asked of the bytes
            return settings, None
    try:
        return settings_from_bytes(given[1], file=given[0]), given[1]
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("config: %s", problem)
        return None


def _fit_memory_limit(settings: Settings, raw: bytes | None) -> Settings:
    """``limits.max_connections`` fitted to the container's memory limit (`_memlimit`)."""
    from ._memlimit import fitted

    settings, line, warn = fitted(settings, raw)
    if line:
        log.log(logging.WARNING if warn else logging.INFO, "%s", line)
    return settings


def _supervise(args: argparse.Namespace) -> int:
    """The parent of ``--workers N``. It binds the port once; every worker inherits the
    listening socket (no SO_REUSEPORT: a second instance cannot join the port)."""
    from ..core._sharedbuckets import create
    from ._supercontrol import merge
    from ._supervisor import Config, ReloadCheck, Reloaded, Supervisor

    count = args.workers
    problem = directory_problem(args.config_dir) if args.config_dir_explicit else ""
    if problem:
        log.error("config: %s", problem)
        return 2
    checked = _confcheck(args.config_dir, args.log_format)
    if checked is None:
        return 2
    file, raw, admin_listen, drain_s, _, _, diagnostics_format = checked
    if not args.log_format:  # neither flag nor variable: the configuration's [diagnostics]
        args.log_format = diagnostics_format
        configure_diagnostics(args.log_level, args.log_format)
    try:
        listener = bind_socket(*args.listen)
    except ListenError as exc:
        log.error("%s (choose another address with --listen HOST:PORT)", exc)
        return 1
    address = socket_address(listener)
    admin_listener = None
    if admin_listen:
        from ..engine._adminbind import bind_admin_socket

        try:
            admin_listener = bind_admin_socket(admin_listen)
        except ListenError as exc:
            log.error("%s", exc)
            listener.close()
            return 1
    upstream = format_host_port(*args.upstream)
    worker_argv = [
        f"--listen={address}",
        f"--upstream={upstream}",
        f"--config-dir={args.config_dir}",
        f"--log-level={args.log_level}",
        f"--log-format={args.log_format}",
    ]
    os.environ["TRIOPROXY_WORKER_COUNT"] = str(count)  # they share the memory limit (_memlimit)
    # One rate-limit table for all the workers: a client has one bucket, whoever serves it.
    buckets_fd = create()
    os.environ["TRIOPROXY_BUCKETS_FD"] = str(buckets_fd)

    def reload() -> ReloadCheck:
        # Checked once, in a subprocess the supervisor's loop watches; every worker is then
        # handed the same bytes. Changes are counted since the last reload.
        state = (raw, supervisor.config.raw)  # started with, running now
        argv = _confcheck_argv(args.config_dir, args.log_format)
        return ReloadCheck(argv, marshal.dumps(state), reloaded)

    def reloaded(status: int, output: bytes) -> Reloaded | None:
        answer = _confcheck_answer(status, output)
        if answer is None:
            return None
        file, new_raw, _, _, line, warn, _ = answer
        level = logging.WARNING if warn else logging.INFO
        return Config(file, new_raw), partial(log.log, level, "%s", line)

    supervisor = Supervisor(
        worker_argv,
        count,
        stop_timeout_s=drain_s + 5,
        config=Config(file, raw),
        reload=reload,
        extra_fds=(buckets_fd,),
        listener=listener,
    )

    def metrics() -> bytes:
        from ..engine._diagnostics import dropped_lines
        from ..engine._exposition import exposition
        from ..engine._metrics import MetricsSnapshot, merge_snapshots

        snapshots = [MetricsSnapshot.from_tuple(s) for s in supervisor.snapshots()]
        workers = sum(w.accepting for w in list(supervisor.workers.values()))
        extra = (
            ("gauge", "trioproxy_workers", "Worker processes accepting now", workers),
            (
                "counter",
                "trioproxy_workers_hung",
                "Workers killed and replaced because they stopped answering",
                supervisor.hung_total,
            ),
            (
                "counter",
                "trioproxy_supervisor_diagnostics_dropped",
                "The supervisor's own diagnostics lines lost because stderr was full",
                dropped_lines(),
            ),
        )
        return exposition(merge_snapshots(snapshots, extra))

    def control(method: bytes, target: bytes, body: bytes) -> tuple[int, bytes, bytes]:
        return merge(method, target, supervisor.control(method, target, body))

    admin = None
    if admin_listener is not None:
        # Only with an admin listener: it brings the HTTP head reader (`core._headers`).
        from ._superadmin import SupervisorAdmin

        server = SupervisorAdmin(
            admin_listener,
            healthy=lambda: supervisor.healthy,
            upstream=args.upstream,
            metrics=metrics,
            control=control,
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
        listener.close()
        if admin_listener is not None:
            admin_listener.close()
        os.close(buckets_fd)
    log.info("stopped")
    return status


def _confcheck(config_dir: str, log_format: str) -> tuple[Any, ...] | None:
    """Check the configuration in a process of its own (`_confcheck`), which writes any
    problems to stderr; None if it is invalid (or the check itself failed)."""
    try:
        result = subprocess.run(
            _confcheck_argv(config_dir, log_format),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.error("config: could not be checked: %s", exc)
        return None
    return _confcheck_answer(result.returncode, result.stdout)


def _confcheck_argv(config_dir: str, log_format: str) -> list[str]:
    return [sys.executable, "-m", "trioproxy.app._confcheck", config_dir, log_format]


def _confcheck_answer(status: int, output: bytes) -> tuple[Any, ...] | None:
    if status != 0:
        return None
    try:
        answer: tuple[Any, ...] = marshal.loads(output)
    except (ValueError, EOFError, TypeError) as exc:
        log.error("config: could not be checked: %s", exc)
        return None
    return answer
