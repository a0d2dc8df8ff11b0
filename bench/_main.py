"""The benchmark's command line and the order of its phases.

Phases, all in one run, all on 127.0.0.1:
1. start the origin (nginx, static 1 KiB / 64 KiB) and every target, each pinned; the idle
   RSS of each trioproxy process (single, supervisor, each worker) before its first request;
2. memory: RSS per idle keep-alive connection (trioproxy, and nginx for reference),
   on the freshly started processes; then, on processes of their own, RSS per request
   parked on a silent origin and the 500-burst (`_connmem`);
3. loads: for each load, a warm-up run per target, then the repetitions interleaved
   (rep 1 of every target, then rep 2, ...) so that drift hits all targets alike, the order
   reversed in every other rep so that no target always runs first; the targets of a
   paired comparison (trioproxy and the baseline on one parser, trioproxy with and without
   the hook) are neighbours, so each rep runs them back to back;
4. growth: RSS over a count-bounded wrk run against trioproxy (1 worker);
5. a final body check on every target; tables, the project's targets (met or missed),
   warnings, JSON; exit 1 on any failure (a missed target is not a failure).

Options (``python bench/run.py --help``):
  --quick | --full      CI smoke run (< 30 s) | the full -d10s loads and a 1M growth run
  --parser P            auto | h11 | h11-mypyc | both: TRIOPROXY_PARSER for trioproxy and
                        the baseline (default: both, or auto with --quick); the multi-worker
                        rows, the c50-64k load and the growth run use the first parser
  --targets K,...       kinds: direct, nginx, baseline, trioproxy, workers, hooked (a no-op
                        hook), nopoll (busy_poll_us = 0), proxy.py, mitmdump
  --peers-venv DIR      where else to look for proxy.py and mitmdump (default .venv-peers)
  --reps, --duration, --c1-duration, --growth-requests, --idle-connections, --json,
  --proxy-cmd, --no-pin
Peers and the multi-worker rows run the c50-1k load only. A missing peer is skipped with a
one-line note.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import os
import platform
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from bench import _peers, nginx
from bench._connmem import (
    ConnMeasures,
    Starter,
    measure_target,
    nginx_starter,
    trioproxy_env,
    trioproxy_starter,
)
from bench._goals import Goal, ProcRss, judge
from bench._http import HttpError
from bench._measured import MEASURED, measured_numbers, write_measured
from bench._memory import Growth, IdleConnMemory, growth_check, idle_connection_memory
from bench._procs import CpuTimes, ProcessRegistry, install_signal_exit, load_average_1min
from bench._report import (
    Cell,
    Load,
    Pair,
    RunRecord,
    format_growth,
    format_load_table,
    format_memory,
    format_pairs,
    noise_warnings,
    pair_up,
    summarize,
    write_json,
)
from bench._targets import (
    NO_BUSY_POLL_CONFIG,
    NOOP_HOOK_CONFIG,
    PARSERS,
    TARGET_KINDS,
    Origin,
    Spec,
    Target,
    TargetError,
    check_target,
    default_trioproxy_cmd,
    direct_target,
    parser_installed,
    pretty,
    start_baseline,
    start_nginx_proxy,
    start_origin,
    start_peer,
    start_trioproxy,
    workers_auto_supported,
)
from bench._wrk import WrkError, run_wrk, wrk_binary

RESULTS_DIR = Path(__file__).resolve().parent / "results"
QUICK_BUDGET_S = 30.0
DEFAULT_BUDGET_S = 400.0
BUSY_BEFORE_WARN_PCT = 10.0
LOADAVG_WARN = 0.5
STEAL_WARN_PCT = 5.0
PER_RUN_OVERHEAD_S = 0.3  # wrk start-up and teardown, CPU snapshots
T = TypeVar("T")


@dataclass(frozen=True)
class Plan:
    mode: str  # quick | default | full
    reps: int
    c50_duration_s: int
    c1_duration_s: int
    warmup_s: int  # 0: no warm-up run
    idle_connections: int
    growth_requests: int
    parked_requests: int = 500  # requests parked on a silent origin (0: not measured)
    burst_requests: int = 500  # the burst's size (0: not measured)
    burst_reps: int = 3  # bursts of each kind (GET; 64 KiB POST unless quick)

    def loads(self) -> list[Load]:
        return [
            Load(
                "c50-1k",
                50,
                "1k",
                nginx.body_path("1k"),
                nginx.BODY_SIZES["1k"],
                self.c50_duration_s,
                "throughput",
            ),
            Load(
                "c50-64k",
                50,
                "64k",
                nginx.body_path("64k"),
                nginx.BODY_SIZES["64k"],
                self.c50_duration_s,
                "throughput, large body",
            ),
            Load(
                "c1-1k",
                1,
                "1k",
                nginx.body_path("1k"),
                nginx.BODY_SIZES["1k"],
                self.c1_duration_s,
                "added latency, one connection",
                note="pinned, a proxied request crosses CPUs four times (wrk > proxy > origin > "
                "proxy > wrk) and a direct one never; on a VM those wake-ups alone can cost "
                "0.1 ms, so '+p50 vs nginx' is the like-for-like added latency",
            ),
        ]

    def estimate_s(
        self, specs: list[Spec], primary: str | None, expected_growth_rps: float = 3000.0
    ) -> float:
        loads = self.loads()
        runs = sum(
            self.reps * (load.duration_s + PER_RUN_OVERHEAD_S)
            + (self.warmup_s + PER_RUN_OVERHEAD_S if self.warmup_s else 0)
            for spec in specs
            for load in loads
            if runs_load(spec, load, primary)
        )
        startup = 1.0 * len(specs)
        memory = 2 * (1.5 + self.idle_connections / 500)
        memory += 2 * (3 + self.parked_requests / 200)  # trioproxy and nginx
        memory += 2 * (2 if self.mode != "quick" else 1) * self.burst_reps * 2.5
        growth = self.growth_requests / expected_growth_rps + 2
        return runs + startup + memory + growth


def runs_load(spec: Spec, load: Load, primary: str | None) -> bool:
    """Which loads a target runs: every target c50-1k; peers and multi-worker rows only that;
    c50-64k on the first parser only (it measures body copying, not the parser)."""
    if load.name == "c50-1k":
        return True
    if not spec.every_load:
        return False
    return load.name != "c50-64k" or spec.parser in (None, primary)


@dataclass(frozen=True)
class Layout:
    pinned: bool
    load_cpus: str | None  # wrk, the origin and this script
    proxy_cpus: str | None  # the proxy under test (nginx; trioproxy, 1 worker)
    multi_cpus: str | None  # trioproxy --workers 2
    auto_cpus: str | None  # --workers auto and nginx worker_processes auto
    auto_n: int  # how many CPUs that is
    text: str
    machine_cpus: tuple[int, ...]  # the CPUs this run was allowed, before pinning itself


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python bench/run.py",
        description="Benchmark trioproxy against direct-to-origin and nginx on 127.0.0.1.",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--quick",
        action="store_true",
        help="smoke run for CI: each target once, 1 s loads, small memory checks (< 30 s); "
        "exit status 1 if any target fails to serve or wrk reports errors",
    )
    mode.add_argument(
        "--full",
        action="store_true",
        help="the full loads: -d10s everywhere, 3 repetitions, a 1,000,000-request "
        "growth run (about 12 minutes of loads with both parsers, plus the growth run: "
        "1M / trioproxy's rps)",
    )
    p.add_argument(
        "--json",
        type=Path,
        help="where to write the JSON results (default: bench/results/bench-MODE-TIMESTAMP.json)",
    )
    p.add_argument(
        "--previous-cmd",
        help="command that starts another build of trioproxy (e.g. a checkout of the previous "
        "main: 'OTHER/.venv/bin/python -m trioproxy'): rows previous[PARSER] beside ours",
    )
    p.add_argument(
        "--also",
        action="append",
        metavar="NAME=CMD",
        help="another build of trioproxy to measure beside ours, rows NAME[PARSER] (repeatable; "
        "e.g. 'compiled=env PYTHONPATH=build/compiled .venv/bin/python -m trioproxy')",
    )
    p.add_argument(
        "--record",
        action="store_true",
        help="write the run's quotable figures to bench/measured.json, the one source the "
        "docs and the module file quote (a run on a quiet machine, at the commit described)",
    )
    p.add_argument(
        "--targets",
        default=",".join(TARGET_KINDS),
        help=f"comma-separated kinds of target out of {','.join(TARGET_KINDS)} (default: all; "
        "'workers' = trioproxy --workers 2 and --workers auto, nginx worker_processes auto; "
        "a peer that is not installed is skipped with a note)",
    )
    p.add_argument(
        "--parser",
        choices=["auto", *PARSERS, "both"],
        help="TRIOPROXY_PARSER for trioproxy and the baseline: 'both' gives each a row per "
        "parser in the same run (default both; --quick: auto = h11-mypyc when installed)",
    )
    p.add_argument(
        "--peers-venv",
        type=Path,
        default=_peers.DEFAULT_PEERS_VENV,
        help="a virtualenv holding the optional peers (proxy.py, mitmproxy), looked in after "
        f"this interpreter and PATH (default: %(default)s; make it with: {_peers.INSTALL_HINT})",
    )
    p.add_argument("--reps", type=int, help="repetitions per load and target")
    p.add_argument("--duration", type=int, help="seconds per -c50 run")
    p.add_argument("--c1-duration", type=int, help="seconds per -c1 run")
    p.add_argument(
        "--growth-requests",
        type=int,
        help="requests in the RSS growth run (default 100,000; --full 1,000,000; "
        "--quick 2,000; 0 skips it)",
    )
    p.add_argument(
        "--idle-connections",
        type=int,
        help="idle keep-alive connections for the memory check (default 1,000)",
    )
    p.add_argument(
        "--proxy-cmd",
        help="command that starts trioproxy, before its --listen/--upstream/--config-dir "
        f"arguments (default: {shlex.join(default_trioproxy_cmd())})",
    )
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    return p.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    if args.quick:
        base = Plan("quick", 1, 1, 1, 0, 50, 2_000, 50, 100, 1)
    elif args.full:
        base = Plan("full", 3, 10, 10, 2, 1_000, 1_000_000)
    else:
        base = Plan("default", 3, 5, 3, 1, 1_000, 100_000)

    def pick(value: int | None, default: int) -> int:
        return default if value is None else value

    return Plan(
        mode=base.mode,
        reps=max(1, pick(args.reps, base.reps)),
        c50_duration_s=max(1, pick(args.duration, base.c50_duration_s)),
        c1_duration_s=max(1, pick(args.c1_duration, base.c1_duration_s)),
        warmup_s=base.warmup_s,
        idle_connections=max(0, pick(args.idle_connections, base.idle_connections)),
        growth_requests=max(0, pick(args.growth_requests, base.growth_requests)),
        parked_requests=base.parked_requests,
        burst_requests=base.burst_requests,
        burst_reps=base.burst_reps,
    )


def choose_layout(no_pin: bool) -> Layout:
    cpus = sorted(os.sched_getaffinity(0))
    if no_pin or len(cpus) < 2 or shutil.which("taskset") is None:
        why = "--no-pin" if no_pin else "fewer than 2 CPUs or no taskset"
        text = f"not pinned ({why}): all processes share CPUs {','.join(map(str, cpus))}"
        return Layout(False, None, None, None, None, len(cpus), text, tuple(cpus))
    load, proxy = cpus[0], cpus[1]
    # Several workers get CPUs of their own when there are enough; on 2 CPUs they share
    # wrk's, and the scaling figure says so.
    multi = cpus[1:3] if len(cpus) >= 3 else cpus
    auto = cpus[1:] if len(cpus) >= 3 else cpus
    multi_text = ",".join(map(str, multi))
    auto_text = ",".join(map(str, auto))
    text = (
        f"CPU {load}: wrk (-t1), the origin nginx and this script; CPU {proxy}: the proxy under "
        f"test (nginx, baseline, peers, trioproxy 1 worker); --workers 2: CPUs {multi_text}; "
        f"--workers auto and nginx worker_processes auto: CPUs {auto_text}"
        + (f" (so workers share CPU {load} with wrk and the origin)" if load in multi else "")
        + f". 'direct' = wrk and the origin sharing CPU {load}. Pinned with taskset -c."
    )
    return Layout(True, str(load), str(proxy), multi_text, auto_text, len(auto), text, tuple(cpus))


def _version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (out.stdout + out.stderr).strip().splitlines()
    return text[0] if text else "?"


def _raise_nofile(needed: int) -> str | None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(needed, 65536)) if hard != resource.RLIM_INFINITY else max(needed, 65536)
    if soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        return f"open-file limit {soft} is below the {needed} the memory check needs"
    return None


def say(msg: str = "") -> None:
    print(msg, flush=True)


@dataclass
class Lineup:
    """The targets of this run, and which rows the targets' ratios compare."""

    specs: list[Spec]
    parsers: list[str]  # for trioproxy and the baseline; [0] is the primary
    notes: list[str]  # skipped targets, parser fallbacks
    scaling: tuple[str, str] | None = None  # (1 worker, 2 workers)
    auto_pair: tuple[str, str] | None = None  # (trioproxy auto, nginx auto)
    hook_pair: tuple[str, str] | None = None  # (with a no-op hook, without)

    @property
    def primary(self) -> str | None:
        return self.parsers[0] if self.parsers else None

    def paired(self) -> list[tuple[str, str]]:
        """The (top, bottom) rows compared repetition by repetition: trioproxy against the
        baseline on each parser, and the hook's pair."""
        names = {spec.name for spec in self.specs}
        out = [
            (pretty("trioproxy", p), pretty("baseline", p))
            for p in self.parsers
            if {pretty("trioproxy", p), pretty("baseline", p)} <= names
        ]
        return out + ([self.hook_pair] if self.hook_pair else [])

    def baselines(self) -> dict[str, str]:
        """Each row's baseline: the same parser's, else the primary parser's."""
        out: dict[str, str] = {}
        for spec in self.specs:
            parser = spec.parser or self.primary
            if parser is not None and spec.kind != "baseline":
                out[spec.name] = pretty("baseline", parser)
        return out


def resolve_parsers(choice: str) -> tuple[list[str], list[str]] | str:
    """(parsers, notes), or the one-line error for an uninstalled explicit choice."""
    if choice in PARSERS:
        if not parser_installed(choice):
            return f"--parser {choice}: it is not installed in {sys.executable}"
        return [choice], []
    installed = [p for p in PARSERS if parser_installed(p)]
    if choice == "auto":
        return installed[:1], []
    notes = [f"--parser both: {p} is not installed; skipped" for p in PARSERS if p not in installed]
    return installed, notes


def make_lineup(
    kinds: list[str],
    parsers: list[str],
    notes: list[str],
    layout: Layout,
    proxy_cmd: list[str],
    peers_venv: Path,
) -> Lineup:
    lineup = Lineup([], parsers, list(notes))
    specs = lineup.specs
    primary = lineup.primary
    if "direct" in kinds:
        specs.append(Spec("direct", "direct"))
    if "nginx" in kinds:
        specs.append(Spec("nginx", "nginx"))
    for parser in parsers:
        for kind in ("baseline", "trioproxy"):
            if kind in kinds:
                specs.append(Spec(pretty(kind, parser), kind, parser))
        if "hooked" in kinds and parser == primary:
            # Same parser and layout as the trioproxy row, and its neighbour in the schedule:
            # the ratio between them is the hook's.
            hooked = pretty("trioproxy+hook", parser)
            specs.append(Spec(hooked, "trioproxy", parser, config=NOOP_HOOK_CONFIG))
            if "trioproxy" in kinds:
                lineup.hook_pair = (hooked, pretty("trioproxy", parser))
        if "nopoll" in kinds and parser == primary:
            nopoll = pretty("trioproxy-nopoll", parser)
            specs.append(Spec(nopoll, "trioproxy", parser, config=NO_BUSY_POLL_CONFIG))
    if "workers" in kinds:
        n = layout.auto_n
        if n < 2:
            lineup.notes.append(f"workers rows skipped: {n} CPU available")
        else:
            auto = workers_auto_supported(proxy_cmd)
            if not auto:
                lineup.notes.append(
                    f"trioproxy --help does not mention --workers auto: using --workers {n}"
                )
            ours = Spec(pretty("trioproxy", primary, n), "trioproxy", primary, n, auto, False)
            # nginx 1.22's auto counts online CPUs, not the affinity mask: say the number
            # when the pinned set is smaller than the machine.
            theirs = Spec(f"nginx-w{n}", "nginx", None, n, n == os.cpu_count(), False)
            two = ours
            if n != 2:
                two = Spec(pretty("trioproxy", primary, 2), "trioproxy", primary, 2, False, False)
                specs.append(two)
            specs += [ours, theirs]
            if "trioproxy" in kinds:
                lineup.scaling = (pretty("trioproxy", primary), two.name)
            lineup.auto_pair = (ours.name, theirs.name)
    for name in _peers.PEER_NAMES:
        if name not in kinds:
            continue
        peer = _peers.find_peer(name, peers_venv)
        if peer is None:
            lineup.notes.append(
                f"{name} skipped: not installed here or in {peers_venv} ({_peers.INSTALL_HINT})"
            )
        else:
            specs.append(Spec(name, name, every_load=False, peer=peer))
    return lineup


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    install_signal_exit()
    plan = make_plan(args)
    aliases = {"trioproxy-w2": "workers"}  # the kind's old name
    kinds = [aliases.get(k, k) for t in args.targets.split(",") if (k := t.strip())]
    unknown = [t for t in kinds if t not in TARGET_KINDS]
    if unknown or not kinds:
        say(f"--targets: unknown kinds {unknown}; choose from {','.join(TARGET_KINDS)}")
        return 2
    missing = [
        name
        for name, found in (("nginx", nginx.nginx_binary()), ("wrk", wrk_binary()))
        if found is None
    ]
    if missing:
        say(f"missing {' and '.join(missing)}; install with: {nginx.INSTALL_HINT}")
        return 2
    resolved = resolve_parsers(args.parser or ("auto" if plan.mode == "quick" else "both"))
    if isinstance(resolved, str):
        say(resolved)
        return 2
    proxy_cmd = shlex.split(args.proxy_cmd) if args.proxy_cmd else default_trioproxy_cmd()
    layout = choose_layout(args.no_pin)
    lineup = make_lineup(kinds, *resolved, layout, proxy_cmd, args.peers_venv)
    # Other builds of trioproxy (a checkout of the previous main, the compiled build), one row
    # per parser beside ours, interleaved with them: "unchanged within noise" is one run's.
    others = [f"previous={args.previous_cmd}"] if args.previous_cmd else []
    for other in others + (args.also or []):
        name, _, command = other.partition("=")
        for parser in resolved[0]:
            spec = Spec(pretty(name, parser), "trioproxy", parser, cmd=tuple(shlex.split(command)))
            lineup.specs.append(spec)

    reg = ProcessRegistry()
    workdir = Path(tempfile.mkdtemp(prefix="trioproxy-bench-"))
    try:
        return _run(args, plan, layout, lineup, proxy_cmd, reg, workdir)
    except SystemExit as exc:
        say(f"interrupted (exit status {exc.code}): stopping every process this run started")
        raise
    finally:
        reg.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)


def _start(
    spec: Spec,
    reg: ProcessRegistry,
    workdir: Path,
    origin: Origin,
    layout: Layout,
    proxy_cmd: list[str],
) -> Target:
    cpus = layout.proxy_cpus
    if spec.workers > 1:
        cpus = layout.multi_cpus if spec.workers == 2 else layout.auto_cpus
    if spec.kind == "direct":
        return direct_target(origin, layout.load_cpus)
    if spec.kind == "nginx":
        return start_nginx_proxy(reg, workdir, origin, cpus, spec)
    if spec.kind == "baseline":
        return start_baseline(reg, origin, cpus, spec)
    if spec.kind == "trioproxy":
        return start_trioproxy(reg, workdir, origin, cpus, spec, cmd=list(spec.cmd) or proxy_cmd)
    return start_peer(reg, workdir, origin, cpus, spec)


def _idle_rss(t: Target) -> list[ProcRss]:
    """Idle RSS of a trioproxy target's processes, as read before its first request."""
    if t.spec is None or t.spec.kind != "trioproxy" or t.rss_at_ready_kib is None:
        return []
    pid = t.proc.pid if t.proc else None
    if t.worker_rss_kib is None:
        return [ProcRss(t.name, "single", pid, t.rss_at_ready_kib)]
    return [ProcRss(t.name, "supervisor", pid, t.rss_at_ready_kib)] + [
        ProcRss(t.name, f"worker {i + 1}", wpid, rss)
        for i, (wpid, rss) in enumerate(t.worker_rss_kib)
    ]


def _run(
    args: argparse.Namespace,
    plan: Plan,
    layout: Layout,
    lineup: Lineup,
    proxy_cmd: list[str],
    reg: ProcessRegistry,
    workdir: Path,
) -> int:
    started = time.monotonic()
    started_at = datetime.datetime.now(datetime.UTC)
    warnings: list[str] = []
    problems: list[str] = []
    budget = QUICK_BUDGET_S if plan.mode == "quick" else DEFAULT_BUDGET_S

    if layout.pinned:
        assert layout.load_cpus is not None
        os.sched_setaffinity(0, {int(layout.load_cpus)})
    if (w := _raise_nofile(plan.idle_connections + 200)) is not None:
        warnings.append(w)

    # Was the machine quiet before we started?
    loadavg = load_average_1min()
    before = CpuTimes.read()
    time.sleep(0.3 if plan.mode == "quick" else 1.0)
    busy_before, _ = CpuTimes.read().since(before)
    if loadavg > LOADAVG_WARN:
        warnings.append(
            f"load average {loadavg:.2f} before start (> {LOADAVG_WARN}): "
            "other work was running; numbers may be low or noisy"
        )
    if busy_before > BUSY_BEFORE_WARN_PCT:
        warnings.append(f"CPUs {busy_before:.0f}% busy before start: other work is running")

    loads = plan.loads()
    primary = lineup.primary
    say(
        f"trioproxy benchmark, mode {plan.mode}: {plan.reps} repetition(s); "
        f"-c50 runs {plan.c50_duration_s} s, -c1 runs {plan.c1_duration_s} s, warm-up "
        f"{plan.warmup_s} s per load and target; memory: {plan.idle_connections} idle "
        f"connections; growth: {plan.growth_requests:,} requests"
    )
    say(f"parsers (TRIOPROXY_PARSER for trioproxy and baseline): {', '.join(lineup.parsers)}")
    say(f"targets: {', '.join(s.name for s in lineup.specs)}")
    for note in lineup.notes:
        say(f"note: {note}")
    say(f"estimated time {plan.estimate_s(lineup.specs, primary):.0f} s (budget {budget:.0f} s)")
    say(f"core layout: {layout.text}")
    say(
        "access logs: trioproxy's stdout and nginx proxy's /dev/stdout (one JSON line per "
        "request each) go to /dev/null; the origin, the baseline and the peers do not log"
    )
    say(
        f"machine: {os.cpu_count()} CPUs, load average {loadavg:.2f}, "
        f"{busy_before:.0f}% busy before start"
    )
    say()

    # --- phase 1: processes --------------------------------------------------------------
    steal_start = CpuTimes.read()
    origin: Origin | None = None
    try:
        origin = start_origin(reg, workdir, layout.load_cpus)
    except TargetError as exc:
        problems.append(f"origin: {exc}")
    targets: list[Target] = []
    if origin is not None:
        for spec in lineup.specs:
            try:
                target = _start(spec, reg, workdir, origin, layout, proxy_cmd)
            except TargetError as exc:
                problems.append(f"{spec.name} did not start: {exc}")
                say(f"FAILED to start {spec.name}: {exc}")
                continue
            target.spec = spec
            targets.append(target)
            where = f"CPUs {target.cpus}" if target.cpus else "not pinned"
            say(f"started {spec.name} on 127.0.0.1:{target.port} ({where})")
    idle_rss = [r for t in targets for r in _idle_rss(t)]

    # --- phase 2: memory per idle connection ---------------------------------------------
    memory: list[IdleConnMemory] = []
    if origin is not None and plan.idle_connections > 0:
        for t in targets:
            if t.proc is None or t.spec is None or t.spec.workers > 1:
                continue
            if t.spec.kind != "nginx" and t.name != pretty("trioproxy", primary):
                continue
            say(f"memory: {t.name}, {plan.idle_connections} idle keep-alive connections ...")
            try:
                m = idle_connection_memory(
                    t.name,
                    t.proc.pid,
                    t.port,
                    nginx.body_path("1k"),
                    plan.idle_connections,
                    rss_at_ready_kib=t.rss_at_ready_kib,
                    warm=5 if plan.mode == "quick" else 10,
                )
            except (OSError, ValueError) as exc:
                problems.append(f"memory check on {t.name} failed: {exc}")
                continue
            memory.append(m)
            problems.extend(f"memory check on {t.name}: {p}" for p in m.problems)

    conn: list[ConnMeasures] = []
    if origin is not None and (plan.parked_requests or plan.burst_requests):
        names = {t.name for t in targets}
        conn = _conn_measures(plan, layout, lineup, proxy_cmd, reg, workdir, origin.port, names)
        for c in conn:
            (problems if c.target != "nginx" else warnings).extend(
                f"connection measures on {c.target}: {p}" for p in c.problems
            )

    # --- phase 3: loads --------------------------------------------------------------------
    records: list[RunRecord] = []
    live = list(targets)
    total_runs = plan.reps * sum(
        1 for load in loads for t in live if t.spec and runs_load(t.spec, load, primary)
    )
    done = 0
    if origin is not None:
        for load in loads:
            these = [t for t in live if t.spec is None or runs_load(t.spec, load, primary)]
            for rep, t in interleave(these, plan.reps, warmup=plan.warmup_s > 0):
                if t.failed:
                    continue
                if not t.alive():
                    assert t.proc is not None
                    t.failed = f"{t.name} died: {t.proc.describe_exit()}"
                    problems.append(t.failed)
                    say(f"FAILED: {t.failed}")
                    continue
                watch = {"origin": origin.proc.pid}
                if t.proc is not None:
                    watch["proxy"] = t.proc.pid
                try:
                    result = run_wrk(
                        reg,
                        t.url_base + load.path,
                        connections=load.connections,
                        duration_s=plan.warmup_s if rep < 0 else load.duration_s,
                        cpus=layout.load_cpus,
                        workdir=workdir / "wrk",
                        expected_body=load.body_bytes,
                        watch=watch,
                    )
                except WrkError as exc:
                    problems.append(str(exc))
                    say(f"FAILED: {exc}")
                    return _finish(
                        args,
                        plan,
                        layout,
                        lineup,
                        started,
                        started_at,
                        loadavg,
                        busy_before,
                        steal_start,
                        targets,
                        loads,
                        records,
                        [],
                        memory,
                        idle_rss,
                        None,
                        warnings,
                        problems,
                    )
                records.append(RunRecord(load.name, t.name, rep, result))
                if rep >= 0:
                    done += 1
                label = "warm-up" if rep < 0 else f"rep {rep + 1}/{plan.reps}"
                cpu = " ".join(f"{k} {v:.0f}%" for k, v in result.cpu_pct.items())
                if (us := result.cpu_us_per_request.get("proxy")) is not None:
                    cpu += f", proxy {us:.0f}us per request"
                status = "ok" if result.clean else "PROBLEM: " + "; ".join(result.problems)
                say(
                    f"[{done}/{total_runs}] {load.name} {label} {t.name}: "
                    f"{result.rps:,.0f} rps, p50 {result.latency_us['p50']:.0f}us, "
                    f"p99 {result.latency_us['p99']:.0f}us, CPU {cpu}: {status}"
                )
                if not result.clean:
                    problems.append(f"{load.name} {label} {t.name}: {'; '.join(result.problems)}")
                    say(result.stdout)

    cells = summarize(records, loads, [t.name for t in targets], lineup.baselines())

    # --- phase 4: growth -------------------------------------------------------------------
    growth: Growth | None = None
    single = pretty("trioproxy", primary)
    subject = next((t for t in targets if t.name == single and not t.failed), None)
    subject = subject or next((t for t in targets if t.name == "nginx" and not t.failed), None)
    if origin is not None and subject is not None and plan.growth_requests > 0:
        assert subject.proc is not None
        rate = next(
            (c.rps_median for c in cells if c.target == subject.name and c.load == "c50-1k"), None
        )
        say(f"growth: {plan.growth_requests:,} requests to {subject.name} while sampling RSS ...")
        elapsed_now = time.monotonic() - started
        try:
            growth = growth_check(
                reg,
                subject.name,
                subject.proc.pid,
                subject.url_base + nginx.body_path("1k"),
                requests=plan.growth_requests,
                expected_rps=rate,
                wrk_cpus=layout.load_cpus,
                workdir=workdir / "wrk",
                expected_body=nginx.BODY_SIZES["1k"],
                watch={"origin": origin.proc.pid, "proxy": subject.proc.pid},
                # Within the run's budget, but never so short that 100,000 requests at
                # trioproxy's rate cannot finish.
                max_seconds=None
                if plan.mode == "full"
                else max(90, int(budget - elapsed_now - 10)),
            )
        except (OSError, ValueError, WrkError) as exc:
            problems.append(f"growth check on {subject.name} failed: {exc}")
        if growth is not None:
            problems.extend(f"growth run on {subject.name}: {p}" for p in growth.wrk.problems)
            warnings.extend(f"growth run on {subject.name}: {n}" for n in growth.wrk.notes)
            if not growth.flat and plan.mode != "quick":
                warnings.append(
                    f"memory: {subject.name} RSS grew {growth.second_half_growth_kib} KiB in the "
                    "second half of the growth run (more than 1 MiB)"
                )

    # --- phase 5: still serving the right bodies? ------------------------------------------
    if origin is not None:
        for t in targets:
            if t.failed:
                continue
            if (p := check_target(t, origin.bodies)) is not None:
                problems.append(f"after the loads: {p}")

    return _finish(
        args,
        plan,
        layout,
        lineup,
        started,
        started_at,
        loadavg,
        busy_before,
        steal_start,
        targets,
        loads,
        records,
        cells,
        memory,
        idle_rss,
        growth,
        warnings,
        problems,
        conn=conn,
    )


def interleave(targets: list[T], reps: int, *, warmup: bool) -> list[tuple[int, T]]:
    """The order of one load's runs as (rep, target), rep -1 for a warm-up: the warm-ups,
    then each rep over every target, every other rep in reverse order, so that neighbours
    in ``targets`` run back to back in every rep and neither always first."""
    schedule = [(-1, t) for t in targets] if warmup else []
    for rep in range(reps):
        schedule += [(rep, t) for t in (targets if rep % 2 == 0 else targets[::-1])]
    return schedule


def _conn_measures(
    plan: Plan,
    layout: Layout,
    lineup: Lineup,
    proxy_cmd: list[str],
    reg: ProcessRegistry,
    workdir: Path,
    origin_port: int,
    names: set[str],
) -> list[ConnMeasures]:
    """Parked requests and the burst, on trioproxy (the primary parser) and nginx, each on
    processes of their own (the parked one's upstream is a silent origin)."""
    starters: list[tuple[str, Starter]] = []
    single = pretty("trioproxy", lineup.primary)
    if lineup.primary is not None and single in names:
        env = trioproxy_env(lineup.primary)
        starters.append((single, trioproxy_starter(proxy_cmd, workdir, layout.proxy_cpus, env)))
    if "nginx" in names and plan.mode != "quick":  # (quick: within its time budget)
        starters.append(("nginx", nginx_starter(workdir, layout.proxy_cpus)))
    out: list[ConnMeasures] = []
    for name, start in starters:
        try:
            out.append(
                measure_target(
                    reg,
                    origin_port,
                    name,
                    start,
                    connections=0,  # measured on the started targets (phase 2)
                    parked=plan.parked_requests,
                    burst=plan.burst_requests,
                    reps=plan.burst_reps,
                    post=plan.mode != "quick",
                    say=say,
                )
            )
        except (OSError, ValueError, HttpError, TargetError) as exc:
            out.append(ConnMeasures(name, failed=f"{type(exc).__name__}: {exc}"))
    return out


def _finish(
    args: argparse.Namespace,
    plan: Plan,
    layout: Layout,
    lineup: Lineup,
    started: float,
    started_at: datetime.datetime,
    loadavg: float,
    busy_before: float,
    steal_start: CpuTimes,
    targets: list[Target],
    loads: list[Load],
    records: list[RunRecord],
    cells: list[Cell],
    memory: list[IdleConnMemory],
    idle_rss: list[ProcRss],
    growth: Growth | None,
    warnings: list[str],
    problems: list[str],
    *,
    conn: list[ConnMeasures] | None = None,
) -> int:
    conn = conn or []
    _, steal = CpuTimes.read().since(steal_start)
    if steal > STEAL_WARN_PCT:
        warnings.append(f"hypervisor steal time {steal:.1f}% during the run: a noisy host")
    warnings.extend(noise_warnings(cells))
    pairs: list[Pair] = [
        pair_up(records, cells, load.name, top, bottom)
        for load in loads
        for top, bottom in lineup.paired()
        if {top, bottom} <= {c.target for c in cells if c.load == load.name}
    ]
    elapsed = time.monotonic() - started
    budget = QUICK_BUDGET_S if plan.mode == "quick" else DEFAULT_BUDGET_S
    if plan.mode != "full" and elapsed > budget:
        warnings.append(f"the run took {elapsed:.0f} s, over its {budget:.0f} s budget")

    say()
    say("=" * 100)
    say(
        f"RESULTS ({plan.mode} mode; medians over {plan.reps} repetition(s), with min-max; "
        "CPU in % of one core, per process tree, median)"
    )
    say(f"core layout: {layout.text}")
    say()
    for load in loads:
        if any(c.load == load.name for c in cells):
            say(format_load_table(load, cells))
            say()
    if pairs:
        say(
            "paired: per repetition (each ran both back to back) and medians; rps = the first "
            "row's rps over the second's; req/CPU-s = the second's CPU per request over the "
            "first's"
        )
        say(format_pairs(pairs))
        say()
    if memory:
        say("memory: RSS (/proc/PID/status VmRSS) idle and with idle keep-alive connections")
        say(format_memory(memory))
        say()
    if conn:
        say("per connection: parked requests (RSS) and the burst (another client's delay)")
        say("\n".join(f"  {line}" for m in conn for line in m.lines()))
        say()
    if idle_rss:
        say("idle RSS of each trioproxy process, before its first request:")
        say(format_idle_rss(idle_rss))
        say()
    if growth is not None:
        say("growth: " + format_growth(growth))
        say()
    goals = judge(
        cells,
        lineup.parsers,
        w1=lineup.scaling[0] if lineup.scaling else None,
        w2=lineup.scaling[1] if lineup.scaling else None,
        auto_pair=lineup.auto_pair,
        hook_pair=lineup.hook_pair,
        rss=idle_rss,
        memory=memory,
        conn=conn,
        pairs=pairs,
    )
    say("the project's targets (judged on this run; a missed target is not a failure):")
    for goal in goals:
        say("  " + goal.line())
    verdicts = [g.met for g in goals if g.op]
    say(
        f"  {verdicts.count(True)} met, {verdicts.count(False)} missed, "
        f"{verdicts.count(None)} not measured"
    )
    shared = (layout.load_cpus or "-") in (layout.multi_cpus or "").split(",")
    if layout.pinned and lineup.scaling and shared:
        say(
            "  note: the 2 workers share a CPU with wrk and the origin here, the 1 worker has "
            "one of its own: the scaling figure understates what 2 free cores give"
        )
    say()
    for note in lineup.notes:
        say(f"note: {note}")
    for w in warnings:
        say(f"WARNING: {w}")
    for p in problems:
        say(f"PROBLEM: {p}")
    ok = not problems
    say(
        f"{'OK' if ok else 'FAILED'}: {len(records)} wrk runs, {len(problems)} problem(s), "
        f"{len(warnings)} warning(s), {elapsed:.0f} s"
    )

    json_path: Path = args.json or RESULTS_DIR / (
        f"bench-{plan.mode}-{started_at.strftime('%Y%m%dT%H%M%SZ')}.json"
    )
    data: dict[str, Any] = {
        "tool": "trioproxy bench/run.py",
        "mode": plan.mode,
        "started_at": started_at.isoformat(),
        "elapsed_s": round(elapsed, 1),
        "ok": ok,
        "plan": plan,
        "layout": layout,
        "parsers": lineup.parsers,
        "notes": lineup.notes,
        "machine": {
            "cpus": os.cpu_count(),
            "affinity": list(layout.machine_cpus),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "load_average_before": loadavg,
            "busy_before_pct": round(busy_before, 1),
            "steal_pct_during": round(steal, 2),
        },
        "versions": _versions(lineup),
        "logging": "trioproxy stdout and nginx proxy access_log /dev/stdout -> /dev/null; "
        "origin access_log off",
        "targets": [
            {
                "name": t.name,
                "description": t.description,
                "port": t.port,
                "cpus": t.cpus,
                "argv": t.proc.argv if t.proc else None,
                "parser": t.spec.parser if t.spec else None,
                "baseline": lineup.baselines().get(t.name),
                "failed": t.failed,
            }
            for t in targets
        ],
        "loads": loads,
        "summary": cells,
        "pairs": pairs,
        "memory": memory,
        "connmem": conn,
        "idle_rss": idle_rss,
        "goals": [_goal_json(g) for g in goals],
        "growth": growth,
        "runs": records,
        "warnings": warnings,
        "problems": problems,
    }
    if args.record:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
        numbers = measured_numbers(
            date=started_at.date().isoformat(),
            commit=commit or "?",
            cells=cells,
            memory=memory,
            idle_rss=idle_rss,
            conn=conn,
            pairs=pairs,
        )
        write_measured(numbers)
        say(f"recorded: {MEASURED}")
    try:
        write_json(json_path, data)
        say(f"JSON: {json_path}")
    except OSError as exc:
        say(f"could not write {json_path}: {exc}")
        return 1
    return 0 if ok else 1


def _goal_json(goal: Goal) -> dict[str, Any]:
    return {
        "topic": goal.topic,
        "what": goal.what,
        "value": None if goal.value is None else round(goal.value, 3),
        "op": goal.op,
        "limit": goal.limit,
        "unit": goal.unit.strip(),
        "met": goal.met,
        # Paired throughput goals: the per-repetition ratios the value is the median of, the
        # ratio of the rps medians, and the ratio by CPU time per request with its verdict.
        "pairs": list(goal.pairs),
        "rps_ratio_of_medians": goal.of_medians,
        "cpu_ratio": goal.cpu_value,
        "cpu_met": goal.cpu_met,
    }


def format_idle_rss(rows: list[ProcRss]) -> str:
    return "\n".join(
        f"  {r.target} {r.role}{f' (pid {r.pid})' if r.pid else ''}: {r.rss_kib / 1024:.1f} MiB"
        for r in rows
    )


def _versions(lineup: Lineup) -> dict[str, str]:
    out = {
        "nginx": _version([nginx.nginx_binary() or "nginx", "-v"]),
        "wrk": _version([wrk_binary() or "wrk", "-v"]),
    }
    for dist in ("trioproxy", "trio", "h11", "h11-mypyc"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "?"
    for spec in lineup.specs:
        if spec.peer is not None:
            out[spec.name] = _version([*spec.peer.argv_prefix, "--version"])
    out["python"] = sys.version.split()[0]
    return out
