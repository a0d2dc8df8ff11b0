"""The ``trioproxy`` command: run the proxy (the container entrypoint), ``validate``, ``demo``."""

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

# Neither trio nor the configuration loader here: the supervisor of --workers N never imports
# them (`_run` does, for one process; `_confcheck` checks the supervisor's configuration).
from ._addr import format_host_port, parse_host_port
from ._bind import ListenError, bind_socket, socket_address
from ._cpus import auto_workers
from ._lean import defer_unused_imports, trim

if TYPE_CHECKING:
    from ._settings import Settings

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
    if workers > 1:
        return _supervise(args, workers, listen, upstream)
    from ._channel import worker_config
    from ._config import ConfigError, load_settings, settings_from_bytes

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
    try:
        sock = bind_socket(*listen, reuse_port=os.environ.get("TRIOPROXY_REUSE_PORT") == "1")
    except ListenError as exc:
        log.error("%s (choose another address with --listen HOST:PORT)", exc)
        return 1
    defer_unused_imports()  # before trio is imported (_lean)
    from ._run import run_single

    return run_single(args, sock, settings, upstream)


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
    args: argparse.Namespace, count: int, listen: tuple[str, int], upstream: tuple[str, int]
) -> int:
    """The parent of ``--workers N``. A probe listener finds the port (and that it can be
    bound); each worker binds its own with SO_REUSEPORT, so the probe goes."""
    from ._sharedbuckets import create
    from ._superadmin import SupervisorAdmin
    from ._supervisor import Config, Reloaded, Supervisor

    checked = _confcheck(args.config_dir)
    if checked is None:
        return 2
    file, raw, admin_listen, drain_s, _, _ = checked
    try:
        probe = bind_socket(*listen, reuse_port=True)
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
    worker_argv = [
        f"--listen={address}",
        f"--upstream={args.upstream}",
        f"--config-dir={args.config_dir}",
        f"--log-level={args.log_level}",
    ]
    os.environ["TRIOPROXY_REUSE_PORT"] = "1"
    # One rate-limit table for all the workers: a client has one bucket, whoever serves it.
    buckets_fd = create()
    os.environ["TRIOPROXY_BUCKETS_FD"] = str(buckets_fd)

    def reload() -> Reloaded | None:
        # Checked once here; every worker is then handed the same bytes.
        state = (raw, supervisor.config.raw)  # started with, running now
        checked = _confcheck(args.config_dir, state)
        if checked is None:
            return None
        file, new_raw, _, _, line, warn = checked
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
            upstream=upstream,
            metrics=metrics,
        )
        admin = (admin_listener, server.serve_one)
        where = format_host_port(*admin_listener.getsockname()[:2])
        log.info("admin listener on %s (/healthz, /readyz, /metrics)", where)

    def ready() -> None:
        trim()
        log.info("listening on %s, upstream %s (%d workers)", address, args.upstream, count)

    try:
        status = supervisor.run(ready, admin=admin)
    finally:
        if admin_listener is not None:
            admin_listener.close()
        os.close(buckets_fd)
    log.info("stopped")
    return status


def _confcheck(config_dir: str, state: tuple[Any, ...] | None = None) -> tuple[Any, ...] | None:
    """Check the configuration in a process of its own (`_confcheck`), which writes any
    problems to stderr; None if it is invalid (or the check itself failed)."""
    try:
        result = subprocess.run(
            [sys.executable, "-m", "trioproxy._confcheck", config_dir],
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
