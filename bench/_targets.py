"""Start the origin and the targets under test, and check that each serves the right bodies.

Kinds of target (``--targets`` picks kinds): ``direct`` (wrk to the origin itself),
``nginx`` (the reference reverse proxy, 1 worker), ``baseline`` (bench/baseline.py, the
featureless trio+h11 forwarder), ``trioproxy`` (1 worker), ``workers`` (trioproxy
``--workers 2`` for the 1 -> 2 scaling, and ``--workers auto`` against nginx
``worker_processes auto`` on the same cores), and the optional peers ``proxy.py`` and
``mitmdump`` (bench/_peers.py). baseline and trioproxy run once per parser asked for
(``TRIOPROXY_PARSER`` in their environment); their names carry it: ``trioproxy[h11]``.

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
import time
from dataclasses import dataclass
from pathlib import Path

from bench import _peers, nginx
from bench._http import HttpError, get_once, wait_serving
from bench._procs import Managed, ProcessRegistry, children, free_port, rss_kib

TARGET_KINDS: tuple[str, ...] = (
    "direct",
    "nginx",
    "baseline",
    "trioproxy",
    "workers",
    "hooked",
    "nopoll",
    *_peers.PEER_NAMES,
)
PARSERS: tuple[str, ...] = ("h11-mypyc", "h11")
BASELINE_SCRIPT = Path(__file__).resolve().parent / "baseline.py"
READY_RE = re.compile(r"listening on (\S+):(\d+)")
START_TIMEOUT_S = 30.0


class TargetError(Exception):
    pass


@dataclass
class Origin:
    proc: Managed
    port: int
    bodies: dict[str, bytes]  # path -> exact body


@dataclass(frozen=True)
class Spec:
    """What to start: one row of the tables."""

    name: str  # unique, e.g. "trioproxy[h11]", "nginx-w2"
    kind: str  # direct nginx baseline trioproxy proxy.py mitmdump
    parser: str | None = None  # baseline and trioproxy: the TRIOPROXY_PARSER they run with
    workers: int = 1
    auto: bool = False  # --workers auto / worker_processes auto (``workers`` is what it means)
    every_load: bool = True  # False: the c50-1k load only (peers and multi-worker rows)
    peer: _peers.Peer | None = None
    # trioproxy: files of its configuration directory, (relative path, text); () = defaults.
    config: tuple[tuple[str, str], ...] = ()
    cmd: tuple[str, ...] = ()  # trioproxy: another build to start (--previous-cmd); () = ours


# The cost of the hook machinery itself: a rule with a no-op request hook on every request.
NOOP_HOOK_CONFIG: tuple[tuple[str, str], ...] = (
    (
        "trioproxy.toml",
        '[[rules]]\nhook = { file = "hooks/noop.py", name = "request", timeout_s = 1 }\n',
    ),
    ("hooks/noop.py", "async def request(exchange):\n    return None\n"),
)


# trioproxy as it was before busy polling: what the loop's polling before it sleeps gives.
NO_BUSY_POLL_CONFIG: tuple[tuple[str, str], ...] = (
    ("trioproxy.toml", "[tuning]\nbusy_poll_us = 0\n"),
)


def pretty(kind: str, parser: str | None, workers: int = 1) -> str:
    name = kind if workers == 1 else f"{kind}-w{workers}"
    return f"{name}[{parser}]" if parser else name


@dataclass
class Target:
    name: str
    description: str
    port: int
    cpus: str | None  # CPU list of the process under test (the origin's, for direct)
    proc: Managed | None  # the process under test; None for direct
    rss_at_ready_kib: int | None = None  # before its first request
    failed: str | None = None  # why it stopped being measured, if it did
    spec: Spec | None = None
    # --workers: (pid, RSS) of each worker before the first request, in pid order
    worker_rss_kib: list[tuple[int, int]] | None = None

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
    reg: ProcessRegistry, workdir: Path, origin: Origin, cpus: str | None, spec: Spec
) -> Target:
    binary = nginx.nginx_binary()
    if binary is None:
        raise TargetError(f"nginx is not installed; install it with: {nginx.INSTALL_HINT}")
    prefix = workdir / spec.name
    (prefix / "tmp").mkdir(parents=True)
    port = free_port()
    conf = prefix / "nginx.conf"
    workers = "auto" if spec.auto else str(spec.workers)
    conf.write_text(nginx.proxy_conf(prefix, port, origin.port, workers))
    proc = reg.spawn(spec.name, nginx.argv(binary, prefix, conf), cpus=cpus)
    _wait_and_check(proc, port, origin.bodies)
    count = len(children(proc.pid)) if spec.workers > 1 else 1
    if count != spec.workers and not spec.auto:
        raise TargetError(f"{spec.name}: {count} nginx workers, wanted {spec.workers}")
    what = f"worker_processes {workers}" + (f" (= {count})" if spec.auto else "")
    return Target(
        name=spec.name,
        description=f"nginx reverse proxy, {what}, upstream keepalive 32, JSON access log",
        port=port,
        cpus=cpus,
        proc=proc,
        rss_at_ready_kib=rss_kib(proc.pid),  # after the readiness probes
        spec=spec,
    )


def default_trioproxy_cmd() -> list[str]:
    return [sys.executable, "-m", "trioproxy"]


def trioproxy_present() -> bool:
    try:
        return importlib.util.find_spec("trioproxy.app._cli") is not None
    except ModuleNotFoundError:
        return False


def parser_installed(parser: str) -> bool:
    module = "h11_mypyc" if parser == "h11-mypyc" else "h11"
    return importlib.util.find_spec(module) is not None


def workers_auto_supported(cmd: list[str]) -> bool:
    """Whether this trioproxy takes ``--workers auto`` (its --help mentions auto)."""
    try:
        out = subprocess.run(
            [*cmd, "--help"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    help_text = out.stdout + out.stderr
    start = help_text.find("\n  --workers")  # the option's own entry, not the usage line
    end = help_text.find("\n  -", start + 1)
    return start >= 0 and "auto" in help_text[start : end if end > 0 else None]


def _env(parser: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TRIOPROXY_WORKERS",)}
    if parser is not None:
        env["TRIOPROXY_PARSER"] = parser
    return env


def start_trioproxy(
    reg: ProcessRegistry,
    workdir: Path,
    origin: Origin,
    cpus: str | None,
    spec: Spec,
    *,
    cmd: list[str],
) -> Target:
    name = spec.name
    if cmd == default_trioproxy_cmd() and not trioproxy_present():
        raise TargetError(f"{name}: the engine is not there yet (no trioproxy/app/_cli.py)")
    config_dir = workdir / f"{name}-config"
    config_dir.mkdir()  # empty: all defaults, unless the spec brings files
    for relative, text in spec.config:
        (config_dir / relative).parent.mkdir(parents=True, exist_ok=True)
        (config_dir / relative).write_text(text)
    # One worker listens on port 0 and reports its port. Several workers get a fixed free
    # port, so the test does not depend on how they share a port-0 listener.
    listen_port = 0 if spec.workers == 1 else free_port()
    argv = [
        *cmd,
        "--listen",
        f"127.0.0.1:{listen_port}",
        "--upstream",
        f"127.0.0.1:{origin.port}",
        "--config-dir",
        str(config_dir),
    ]
    # Always explicit: the image's default may become auto, and one worker means no supervisor.
    argv += ["--workers", "auto" if spec.auto else str(spec.workers)]
    proc = reg.spawn(name, argv, cpus=cpus, env=_env(spec.parser), stdout=subprocess.DEVNULL)
    match = _wait_ready(proc, spec.workers)
    if match is None:
        raise TargetError(f"{name} never said 'listening on HOST:PORT': {proc.describe_exit()}")
    port = int(match.group(2))
    rss = rss_kib(proc.pid)  # before its first request
    worker_rss: list[tuple[int, int]] | None = None
    if spec.workers > 1:
        kids = children(proc.pid)
        worker_rss = [(pid, v) for pid in kids if (v := rss_kib(pid)) is not None]
        if len(kids) != spec.workers and not spec.auto:
            raise TargetError(f"{name}: {len(kids)} worker processes, wanted {spec.workers}")
    _check_bodies(proc, port, origin.bodies)
    count = len(worker_rss) if worker_rss is not None else 1
    flag = f"--workers {f'auto (= {count})' if spec.auto else spec.workers}"
    return Target(
        name=name,
        description=f"trioproxy {flag}, {spec.parser or 'default parser'}, "
        "JSON access log to stdout = /dev/null",
        port=port,
        cpus=cpus,
        proc=proc,
        rss_at_ready_kib=rss,
        spec=spec,
        worker_rss_kib=worker_rss,
    )


def _wait_ready(proc: Managed, workers: int) -> re.Match[str] | None:
    """The 'listening on' line; with workers, the supervisor's (the workers say it first,
    each for itself), or the last of workers + 1 such lines."""
    deadline = time.monotonic() + START_TIMEOUT_S
    first: re.Match[str] | None = None
    seen = 0
    while (left := deadline - time.monotonic()) > 0:
        match = proc.wait_for_line(READY_RE, left)
        if match is None:
            return first
        first, seen = first or match, seen + 1
        if workers == 1 or seen > workers or "workers" in match.string:
            return match
    return first


def start_baseline(reg: ProcessRegistry, origin: Origin, cpus: str | None, spec: Spec) -> Target:
    argv = [
        sys.executable,
        str(BASELINE_SCRIPT),
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        f"127.0.0.1:{origin.port}",
    ]
    proc = reg.spawn(spec.name, argv, cpus=cpus, env=_env(spec.parser))
    match = proc.wait_for_line(READY_RE, START_TIMEOUT_S)
    if match is None:
        raise TargetError(
            f"{spec.name} never said 'listening on HOST:PORT': {proc.describe_exit()}"
        )
    port = int(match.group(2))
    rss = rss_kib(proc.pid)
    _check_bodies(proc, port, origin.bodies)
    return Target(
        name=spec.name,
        description=f"bench/baseline.py on {spec.parser}: trio+h11 keep-alive forwarder, "
        "one upstream connection per client connection, no features, no access log",
        port=port,
        cpus=cpus,
        proc=proc,
        rss_at_ready_kib=rss,
        spec=spec,
    )


def start_peer(
    reg: ProcessRegistry, workdir: Path, origin: Origin, cpus: str | None, spec: Spec
) -> Target:
    peer = spec.peer
    assert peer is not None
    port = free_port()
    if spec.kind == "proxy.py":
        argv, env = _peers.proxypy_argv(peer, workdir, port, origin.port, list(origin.bodies))
        description = "proxy.py --enable-reverse-proxy --threaded, 1 acceptor, log level ERROR"
    else:
        argv, env = _peers.mitmdump_argv(peer, workdir, port, origin.port), None
        description = "mitmdump --mode reverse, quiet (-q, flow_detail=0)"
    proc = reg.spawn(spec.name, argv, cpus=cpus, env=env)
    _wait_and_check(proc, port, origin.bodies)
    return Target(
        name=spec.name,
        description=f"{description}; from {peer.where}",
        port=port,
        cpus=cpus,
        proc=proc,
        rss_at_ready_kib=rss_kib(proc.pid),
        spec=spec,
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
