"""The benchmark's command line and the order of its phases.

Phases, all in one run, all on 127.0.0.1:
1. start the origin (nginx, static 1 KiB / 64 KiB) and every target, each pinned;
2. memory: RSS per idle keep-alive connection (trioproxy, and nginx for reference),
   on the freshly started processes;
3. loads: for each load, a warm-up run per target, then the repetitions interleaved
   (rep 1 of every target, then rep 2, ...) so that drift hits all targets alike;
4. growth: RSS over a count-bounded wrk run against trioproxy (1 worker);
5. a final body check on every target; tables, warnings, JSON; exit 1 on any failure.
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
from typing import Any

from bench import nginx
from bench._memory import Growth, IdleConnMemory, growth_check, idle_connection_memory
from bench._procs import CpuTimes, ProcessRegistry, install_signal_exit, load_average_1min
from bench._report import (
    Cell,
    Load,
    RunRecord,
    format_growth,
    format_load_table,
    format_memory,
    noise_warnings,
    summarize,
    write_json,
)
from bench._targets import (
    TARGET_NAMES,
    Origin,
    Target,
    TargetError,
    check_target,
    default_trioproxy_cmd,
    direct_target,
    start_nginx_proxy,
    start_origin,
    start_trioproxy,
)
from bench._wrk import WrkError, run_wrk, wrk_binary

RESULTS_DIR = Path(__file__).resolve().parent / "results"
QUICK_BUDGET_S = 30.0
DEFAULT_BUDGET_S = 300.0
BUSY_BEFORE_WARN_PCT = 10.0
LOADAVG_WARN = 0.5
STEAL_WARN_PCT = 5.0
PER_RUN_OVERHEAD_S = 0.3  # wrk start-up and teardown, CPU snapshots


@dataclass(frozen=True)
class Plan:
    mode: str  # quick | default | full
    reps: int
    c50_duration_s: int
    c1_duration_s: int
    warmup_s: int  # 0: no warm-up run
    idle_connections: int
    growth_requests: int

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

    def estimate_s(self, n_targets: int, expected_growth_rps: float = 2000.0) -> float:
        per_target = sum(
            self.reps * (load.duration_s + PER_RUN_OVERHEAD_S)
            + (self.warmup_s + PER_RUN_OVERHEAD_S if self.warmup_s else 0)
            for load in self.loads()
        )
        startup = 1.0 * n_targets
        memory = 3.0 + self.idle_connections / 500
        growth = self.growth_requests / expected_growth_rps + 2
        return n_targets * per_target + startup + memory + growth


@dataclass(frozen=True)
class Layout:
    pinned: bool
    load_cpus: str | None  # wrk, the origin and this script
    proxy_cpus: str | None  # the proxy under test (nginx; trioproxy, 1 worker)
    multi_cpus: str | None  # trioproxy --workers N
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
        help="the issue's exact loads: -d10s everywhere, 3 repetitions, a 1,000,000-request "
        "growth run (about 7 minutes of loads plus the growth run: 1M / trioproxy's rps)",
    )
    p.add_argument(
        "--json",
        type=Path,
        help="where to write the JSON results (default: bench/results/bench-MODE-TIMESTAMP.json)",
    )
    p.add_argument(
        "--targets",
        default=",".join(TARGET_NAMES),
        help=f"comma-separated subset of {','.join(TARGET_NAMES)} (default: all)",
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
        base = Plan("quick", 1, 1, 1, 0, 50, 2_000)
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
    )


def choose_layout(no_pin: bool) -> Layout:
    cpus = sorted(os.sched_getaffinity(0))
    if no_pin or len(cpus) < 2 or shutil.which("taskset") is None:
        why = "--no-pin" if no_pin else "fewer than 2 CPUs or no taskset"
        text = f"not pinned ({why}): all processes share CPUs {','.join(map(str, cpus))}"
        return Layout(False, None, None, None, text, tuple(cpus))
    load, proxy = cpus[0], cpus[1]
    multi = cpus[1:3] if len(cpus) >= 3 else cpus
    multi_text = ",".join(map(str, multi))
    text = (
        f"CPU {load}: wrk (-t1), the origin nginx and this script; CPU {proxy}: the proxy under "
        f"test (nginx, trioproxy 1 worker); trioproxy --workers 2: CPUs {multi_text}"
        + (f" (so its workers share CPU {load} with wrk and the origin)" if load in multi else "")
        + f". 'direct' = wrk and the origin sharing CPU {load}. Pinned with taskset -c."
    )
    return Layout(True, str(load), str(proxy), multi_text, text, tuple(cpus))


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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    install_signal_exit()
    plan = make_plan(args)
    wanted = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = [t for t in wanted if t not in TARGET_NAMES]
    if unknown or not wanted:
        say(f"unknown targets {unknown}; choose from {','.join(TARGET_NAMES)}")
        return 2
    missing = [
        name
        for name, found in (("nginx", nginx.nginx_binary()), ("wrk", wrk_binary()))
        if found is None
    ]
    if missing:
        say(f"missing {' and '.join(missing)}; install with: {nginx.INSTALL_HINT}")
        return 2
    proxy_cmd = shlex.split(args.proxy_cmd) if args.proxy_cmd else default_trioproxy_cmd()

    reg = ProcessRegistry()
    workdir = Path(tempfile.mkdtemp(prefix="trioproxy-bench-"))
    try:
        return _run(args, plan, wanted, proxy_cmd, reg, workdir)
    except SystemExit as exc:
        say(f"interrupted (exit status {exc.code}): stopping every process this run started")
        raise
    finally:
        reg.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)


def _run(
    args: argparse.Namespace,
    plan: Plan,
    wanted: list[str],
    proxy_cmd: list[str],
    reg: ProcessRegistry,
    workdir: Path,
) -> int:
    started = time.monotonic()
    started_at = datetime.datetime.now(datetime.UTC)
    warnings: list[str] = []
    problems: list[str] = []
    budget = QUICK_BUDGET_S if plan.mode == "quick" else DEFAULT_BUDGET_S

    layout = choose_layout(args.no_pin)
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
    say(
        f"trioproxy benchmark, mode {plan.mode}: {plan.reps} repetition(s); "
        f"-c50 runs {plan.c50_duration_s} s, -c1 runs {plan.c1_duration_s} s, warm-up "
        f"{plan.warmup_s} s per load and target; memory: {plan.idle_connections} idle "
        f"connections; growth: {plan.growth_requests:,} requests"
    )
    say(f"estimated time {plan.estimate_s(len(wanted)):.0f} s (budget {budget:.0f} s)")
    say(f"core layout: {layout.text}")
    say(
        "access logs: trioproxy's stdout and nginx proxy's /dev/stdout (one JSON line per "
        "request each) go to /dev/null; the origin does not log"
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
        for name in wanted:
            try:
                if name == "direct":
                    targets.append(direct_target(origin, layout.load_cpus))
                elif name == "nginx":
                    targets.append(start_nginx_proxy(reg, workdir, origin, layout.proxy_cpus))
                else:
                    workers = 1 if name == "trioproxy" else int(name.rsplit("-w", 1)[1])
                    cpus = layout.proxy_cpus if workers == 1 else layout.multi_cpus
                    targets.append(
                        start_trioproxy(reg, workdir, origin, cpus, workers=workers, cmd=proxy_cmd)
                    )
                say(f"started {name} on 127.0.0.1:{targets[-1].port} (CPUs {targets[-1].cpus})")
            except TargetError as exc:
                problems.append(f"{name} did not start: {exc}")
                say(f"FAILED to start {name}: {exc}")

    # --- phase 2: memory per idle connection ---------------------------------------------
    memory: list[IdleConnMemory] = []
    if origin is not None and plan.idle_connections > 0:
        for t in targets:
            if t.proc is None or t.name not in ("trioproxy", "nginx"):
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

    # --- phase 3: loads --------------------------------------------------------------------
    records: list[RunRecord] = []
    live = list(targets)
    total_runs = len(loads) * len(live) * plan.reps
    done = 0
    if origin is not None:
        for load in loads:
            schedule = [(-1, t) for t in live] if plan.warmup_s else []
            schedule += [(rep, t) for rep in range(plan.reps) for t in live]
            for rep, t in schedule:
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
                        None,
                        warnings,
                        problems,
                    )
                records.append(RunRecord(load.name, t.name, rep, result))
                if rep >= 0:
                    done += 1
                label = "warm-up" if rep < 0 else f"rep {rep + 1}/{plan.reps}"
                cpu = " ".join(f"{k} {v:.0f}%" for k, v in result.cpu_pct.items())
                status = "ok" if result.clean else "PROBLEM: " + "; ".join(result.problems)
                say(
                    f"[{done}/{total_runs}] {load.name} {label} {t.name}: "
                    f"{result.rps:,.0f} rps, p50 {result.latency_us['p50']:.0f}us, "
                    f"p99 {result.latency_us['p99']:.0f}us, CPU {cpu}: {status}"
                )
                if not result.clean:
                    problems.append(f"{load.name} {label} {t.name}: {'; '.join(result.problems)}")
                    say(result.stdout)

    cells = summarize(records, loads, [t.name for t in targets])

    # --- phase 4: growth -------------------------------------------------------------------
    growth: Growth | None = None
    subject = next((t for t in targets if t.name == "trioproxy" and not t.failed), None)
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
                max_seconds=None if plan.mode == "full" else int(budget - elapsed_now - 10),
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
        growth,
        warnings,
        problems,
    )


def _finish(
    args: argparse.Namespace,
    plan: Plan,
    layout: Layout,
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
    growth: Growth | None,
    warnings: list[str],
    problems: list[str],
) -> int:
    _, steal = CpuTimes.read().since(steal_start)
    if steal > STEAL_WARN_PCT:
        warnings.append(f"hypervisor steal time {steal:.1f}% during the run: a noisy host")
    warnings.extend(noise_warnings(cells))
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
    if memory:
        say("memory: RSS (/proc/PID/status VmRSS) idle and with idle keep-alive connections")
        say(format_memory(memory))
        say()
    if growth is not None:
        say("growth: " + format_growth(growth))
        say()
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
        "machine": {
            "cpus": os.cpu_count(),
            "affinity": list(layout.machine_cpus),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "load_average_before": loadavg,
            "busy_before_pct": round(busy_before, 1),
            "steal_pct_during": round(steal, 2),
        },
        "versions": _versions(),
        "logging": "trioproxy stdout and nginx proxy access_log /dev/stdout -> /dev/null; "
        "origin access_log off",
        "targets": [
            {
                "name": t.name,
                "description": t.description,
                "port": t.port,
                "cpus": t.cpus,
                "argv": t.proc.argv if t.proc else None,
                "failed": t.failed,
            }
            for t in targets
        ],
        "loads": loads,
        "summary": cells,
        "memory": memory,
        "growth": growth,
        "runs": records,
        "warnings": warnings,
        "problems": problems,
    }
    try:
        write_json(json_path, data)
        say(f"JSON: {json_path}")
    except OSError as exc:
        say(f"could not write {json_path}: {exc}")
        return 1
    return 0 if ok else 1


def _versions() -> dict[str, str]:
    out = {
        "nginx": _version([nginx.nginx_binary() or "nginx", "-v"]),
        "wrk": _version([wrk_binary() or "wrk", "-v"]),
    }
    try:
        out["trioproxy"] = importlib.metadata.version("trioproxy")
    except importlib.metadata.PackageNotFoundError:
        out["trioproxy"] = "?"
    out["python"] = sys.version.split()[0]
    return out
