"""Per-connection measures on one kind of proxy: RSS per idle keep-alive connection, RSS per
request parked on a silent origin, and the 500-burst (`bench/connmem.py`, and bench/run.py's
memory phase). Each measure gets a freshly started process."""

from __future__ import annotations

import socket
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bench import nginx
from bench._burst import Burst, burst_delay
from bench._memory import IdleConnMemory, idle_connection_memory
from bench._parked import ParkedMemory, SilentOrigin, parked_request_memory
from bench._procs import Managed, ProcessRegistry, free_port
from bench._targets import READY_RE, TargetError, _env

POST_BYTES = 65536
GET = "GET"
POST = f"POST {POST_BYTES // 1024} KiB"

# Starts one proxy in front of an upstream port: (registry, upstream port, tag) -> (process,
# port). The tag names its files and process.
Starter = Callable[[ProcessRegistry, int, str], tuple[Managed, int]]


@dataclass
class ConnMeasures:
    target: str
    idle: IdleConnMemory | None = None
    parked: ParkedMemory | None = None
    bursts: list[Burst] = field(default_factory=list)
    failed: str | None = None  # why the measures stopped, if they did

    def burst_delay_ms(self, method: str) -> float | None:
        """The median over the repetitions."""
        delays = [b.delay_ms for b in self.bursts if b.method == method]
        return statistics.median(delays) if delays else None

    @property
    def problems(self) -> list[str]:
        out = [self.failed] if self.failed else []
        out += self.idle.problems if self.idle else []
        out += self.parked.problems if self.parked else []
        return out + [p for b in self.bursts for p in b.problems]

    def lines(self) -> list[str]:
        out = []
        if self.idle is not None:
            out.append(
                f"{self.target}: {self.idle.per_connection_bytes / 1024:.1f} KiB per idle "
                f"keep-alive connection ({self.idle.opened} open)"
            )
        if self.parked is not None:
            out.append(
                f"{self.target}: {self.parked.per_request_bytes / 1024:.1f} KiB per request "
                f"parked on a silent origin ({self.parked.parked} parked)"
            )
        for method in (GET, POST):
            runs = [b for b in self.bursts if b.method == method]
            if runs:
                out.append(
                    f"{self.target}: a burst of {runs[0].requests} {method} requests delays "
                    f"another client's GET by {self.burst_delay_ms(method):.1f} ms (median of "
                    f"{len(runs)}; each: {', '.join(f'{b.delay_ms:.0f}' for b in runs)} ms; "
                    f"probe idle {statistics.median(b.idle_ms for b in runs):.1f} ms)"
                )
        return out


def trioproxy_env(parser: str | None) -> dict[str, str]:
    """The environment bench/run.py starts trioproxy with (TRIOPROXY_PARSER)."""
    return _env(parser)


def trioproxy_starter(
    cmd: list[str], workdir: Path, cpus: str | None, env: Mapping[str, str] | None = None
) -> Starter:
    def start(reg: ProcessRegistry, upstream: int, tag: str) -> tuple[Managed, int]:
        config = workdir / f"connmem-{tag}-config"
        config.mkdir(exist_ok=True)
        argv = [*cmd, "--listen", "127.0.0.1:0", "--upstream", f"127.0.0.1:{upstream}"]
        argv += ["--config-dir", str(config), "--workers", "1"]
        proc = reg.spawn(f"trioproxy-{tag}", argv, cpus=cpus, env=env)
        match = proc.wait_for_line(READY_RE, 30)
        if match is None:
            raise TargetError(f"trioproxy did not start: {proc.describe_exit()}")
        return proc, int(match.group(2))

    return start


def nginx_starter(workdir: Path, cpus: str | None) -> Starter:
    def start(reg: ProcessRegistry, upstream: int, tag: str) -> tuple[Managed, int]:
        binary = nginx.nginx_binary()
        if binary is None:
            raise TargetError(f"nginx is not installed; install it with: {nginx.INSTALL_HINT}")
        prefix = workdir / f"connmem-nginx-{tag}"
        (prefix / "tmp").mkdir(parents=True)
        port = free_port()
        conf = prefix / "nginx.conf"
        conf.write_text(nginx.proxy_conf(prefix, port, upstream))
        proc = reg.spawn(f"nginx-{tag}", nginx.argv(binary, prefix, conf), cpus=cpus)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # listening is enough: its upstream may be silent
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return proc, port
            except OSError:
                time.sleep(0.05)
        raise TargetError(f"nginx did not start: {proc.describe_exit()}")

    return start


def measure_target(
    reg: ProcessRegistry,
    origin_port: int,
    name: str,
    start: Starter,
    *,
    connections: int,
    parked: int,
    burst: int,
    reps: int,
    post: bool = True,
    say: Callable[[str], None] = print,
) -> ConnMeasures:
    out = ConnMeasures(name)
    path = nginx.body_path("1k")
    if connections:
        say(f"memory: {name}, {connections} idle keep-alive connections ...")
        proc, port = start(reg, origin_port, "idle")
        out.idle = idle_connection_memory(
            name, proc.pid, port, path, connections, rss_at_ready_kib=None
        )
        reg.stop(proc)
    if parked:
        say(f"memory: {name}, {parked} requests parked on a silent origin ...")
        silent = SilentOrigin()
        try:
            proc, port = start(reg, silent.port, "parked")
            out.parked = parked_request_memory(name, proc.pid, port, silent, path, parked)
            reg.stop(proc)
        finally:
            silent.close()
    if burst:
        proc, port = start(reg, origin_port, "burst")
        for post_bytes in (0, POST_BYTES) if post else (0,):
            for rep in range(reps):
                b = burst_delay(name, port, path, burst, post_bytes=post_bytes)
                say(
                    f"burst: {name} {b.method} {rep + 1}/{reps}: probe idle {b.idle_ms:.1f} ms, "
                    f"worst {b.worst_ms:.1f} ms of {b.probes}, delay {b.delay_ms:.1f} ms; "
                    f"{b.answered}/{b.requests} answered in {b.burst_s:.2f} s"
                )
                out.bursts.append(b)
                time.sleep(0.3)
        reg.stop(proc)
    return out
