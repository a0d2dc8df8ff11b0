"""Start the origin and the targets under test, and check that each serves the right bodies.

Targets: ``direct`` (wrk to the origin itself), ``nginx`` (the reference reverse proxy),
``trioproxy`` (one worker) and ``trioproxy-w2`` (``--workers 2``).

trioproxy is started through its command-line interface::

    python -m trioproxy --listen 127.0.0.1:PORT --upstream 127.0.0.1:ORIGINPORT --config-dir DIR

and is ready once it writes a stderr line containing ``listening on HOST:PORT``. Its stdout
(the access log, one JSON line per request) goes to /dev/null: logging stays on, as in
production, and costs what formatting and writing the lines cost.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench import nginx
from bench._http import HttpError, get_once, wait_serving
from bench._procs import Managed, ProcessRegistry, free_port, rss_kib

TARGET_NAMES: tuple[str, ...] = ("direct", "nginx", "trioproxy", "trioproxy-w2")
READY_RE = re.compile(r"listening on (\S+):(\d+)")
START_TIMEOUT_S = 30.0


class TargetError(Exception):
    pass


@dataclass
class Origin:
    proc: Managed
    port: int
    bodies: dict[str, bytes]  # path -> exact body


@dataclass
class Target:
    name: str
    description: str
    port: int
    cpus: str | None  # CPU list of the process under test (the origin's, for direct)
    proc: Managed | None  # the process under test; None for direct
    rss_at_ready_kib: int | None = None  # trioproxy: before its first request
    failed: str | None = None  # why it stopped being measured, if it did

    @property
    def url_base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc is None or self.proc.alive()


def start_origin(reg: ProcessRegistry, workdir: Path, cpus: str | None) -> Origin:
    binary = nginx.nginx_binary()
    if binary is None:
        raise TargetError(f"nginx is not installed; install it with: {nginx.INSTALL_HINT}")
    prefix = workdir / "origin"
    (prefix / "tmp").mkdir(parents=True)
    bodies = nginx.write_bodies(prefix / "www")
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(nginx.origin_conf(prefix, port))
    proc = reg.spawn("origin-nginx", nginx.argv(binary, prefix, conf), cpus=cpus)
    _wait_and_check(proc, port, bodies)
    return Origin(proc=proc, port=port, bodies=bodies)


def direct_target(origin: Origin, cpus: str | None) -> Target:
    return Target(
        name="direct",
        description="wrk straight to the origin nginx (the ceiling of this setup)",
        port=origin.port,
        cpus=cpus,
        proc=None,
    )


def start_nginx_proxy(
    reg: ProcessRegistry, workdir: Path, origin: Origin, cpus: str | None
) -> Target:
    binary = nginx.nginx_binary()
    if binary is None:
        raise TargetError(f"nginx is not installed; install it with: {nginx.INSTALL_HINT}")
    prefix = workdir / "nginx-proxy"
    (prefix / "tmp").mkdir(parents=True)
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(nginx.proxy_conf(prefix, port, origin.port))
    proc = reg.spawn("nginx-proxy", nginx.argv(binary, prefix, conf), cpus=cpus)
    _wait_and_check(proc, port, origin.bodies)
    return Target(
        name="nginx",
        description="nginx reverse proxy, 1 worker, upstream keepalive 32, JSON access log",
        port=port,
        cpus=cpus,
        proc=proc,
        rss_at_ready_kib=rss_kib(proc.pid),  # after the readiness probes
    )


def default_trioproxy_cmd() -> list[str]:
    return [sys.executable, "-m", "trioproxy"]


def trioproxy_present() -> bool:
    try:
        return importlib.util.find_spec("trioproxy._cli") is not None
    except ModuleNotFoundError:
        return False


def start_trioproxy(
    reg: ProcessRegistry,
    workdir: Path,
    origin: Origin,
    cpus: str | None,
    *,
    workers: int,
    cmd: list[str],
) -> Target:
    name = "trioproxy" if workers == 1 else f"trioproxy-w{workers}"
    if cmd == default_trioproxy_cmd() and not trioproxy_present():
        raise TargetError(f"{name}: the engine is not there yet (no trioproxy/_cli.py)")
    config_dir = workdir / f"{name}-config"
    config_dir.mkdir()  # empty: all defaults
    # One worker listens on port 0 and reports its port. Several workers get a fixed free
    # port, so the test does not depend on how they share a port-0 listener.
    listen_port = 0 if workers == 1 else free_port()
    argv = [
        *cmd,
        "--listen",
        f"127.0.0.1:{listen_port}",
        "--upstream",
        f"127.0.0.1:{origin.port}",
        "--config-dir",
        str(config_dir),
    ]
    if workers != 1:
        argv += ["--workers", str(workers)]
    env = {k: v for k, v in os.environ.items() if k != "TRIOPROXY_WORKERS"}
    proc = reg.spawn(name, argv, cpus=cpus, env=env, stdout=subprocess.DEVNULL)
    match = proc.wait_for_line(READY_RE, START_TIMEOUT_S)
    if match is None:
        raise TargetError(f"{name} never said 'listening on HOST:PORT': {proc.describe_exit()}")
    port = int(match.group(2))
    rss = rss_kib(proc.pid)  # before its first request
    _check_bodies(proc, port, origin.bodies)
    return Target(
        name=name,
        description=f"trioproxy, {workers} worker{'s' if workers > 1 else ''}, "
        "JSON access log to stdout = /dev/null",
        port=port,
        cpus=cpus,
        proc=proc,
        rss_at_ready_kib=rss,
    )


def _wait_and_check(proc: Managed, port: int, bodies: dict[str, bytes]) -> None:
    try:
        wait_serving("127.0.0.1", port, next(iter(bodies)), START_TIMEOUT_S, alive=proc.alive)
    except HttpError as exc:
        raise TargetError(f"{exc}; {proc.describe_exit()}") from None
    _check_bodies(proc, port, bodies)


def _check_bodies(proc: Managed, port: int, bodies: dict[str, bytes]) -> None:
    if (problem := body_problem(proc.name, port, bodies)) is not None:
        raise TargetError(problem)


def body_problem(name: str, port: int, bodies: dict[str, bytes]) -> str | None:
    """None if every body path answers 200 with the exact body, else what is wrong."""
    for path, expected in bodies.items():
        try:
            resp = get_once("127.0.0.1", port, path)
        except (OSError, HttpError) as exc:
            return f"{name}: GET {path} failed: {exc}"
        if resp.status != 200 or resp.body != expected:
            return (
                f"{name}: GET {path} gave status {resp.status} and {len(resp.body)} bytes, "
                f"wanted 200 and the exact {len(expected)}-byte body"
            )
    return None


def check_target(target: Target, bodies: dict[str, bytes]) -> str | None:
    """None if the target is running and still serves every body exactly, else what is wrong."""
    if target.proc is not None and not target.proc.alive():
        return f"{target.name} is not running: {target.proc.describe_exit()}"
    return body_problem(target.name, target.port, bodies)
