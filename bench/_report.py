"""Medians, spreads, ratios and warnings; the printed tables and the JSON file."""

from __future__ import annotations

import dataclasses
import json
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench._memory import Growth, IdleConnMemory
from bench._wrk import WrkResult

NOISY_SPREAD_PCT = 15.0
NOISY_CPU_SPREAD_PCT = 10.0
PROXY = "proxy"  # the watched label of the process tree under test
OTHER_CPU_WARN_PCT = 10.0


@dataclass(frozen=True)
class Load:
    name: str  # e.g. "c50-1k"
    connections: int
    body: str  # key of nginx.BODY_SIZES
    path: str
    body_bytes: int
    duration_s: int
    purpose: str
    note: str = ""  # printed under the table


@dataclass
class RunRecord:
    load: str
    target: str
    rep: int  # 0-based; -1 for the warm-up run
    result: WrkResult


@dataclass
class Cell:
    """One (load, target) over its repetitions: medians and min-max."""

    load: str
    target: str
    reps: int
    rps_median: float
    rps_min: float
    rps_max: float
    rps_spread_pct: float  # (max - min) / median
    p50_us: float  # medians of the per-run percentiles
    p90_us: float
    p99_us: float
    p50_us_min: float
    p50_us_max: float
    p99_us_min: float
    p99_us_max: float
    cpu_pct: dict[str, float]  # median per watched process tree, % of one core
    p99_over_p50: float | None = None  # of the medians: the tail against the typical request
    baseline: str | None = None  # the baseline row this one is compared with
    rps_vs_baseline: float | None = None
    rps_vs_direct: float | None = None
    rps_vs_nginx: float | None = None
    p50_added_us_vs_direct: float | None = None
    p50_added_us_vs_nginx: float | None = None
    p99_vs_direct: float | None = None
    p99_vs_nginx: float | None = None
    errors: int = 0  # socket + status errors over all reps
    problems: int = 0  # runs with any problem
    # The proxy's CPU time (user + sys of all its processes and threads) per completed
    # request, in microseconds, medians over the reps; None where no proxy runs (direct).
    cpu_us_per_request: float | None = None
    cpu_user_us_per_request: float | None = None
    cpu_sys_us_per_request: float | None = None
    cpu_us_min: float | None = None
    cpu_us_max: float | None = None
    cpu_spread_pct: float | None = None
    # The baseline's CPU per request over this row's: requests per CPU-second against the
    # baseline's, read as rps_vs_baseline is (1.0: as cheap; 0.8: a quarter more CPU).
    req_per_cpu_vs_baseline: float | None = None


def summarize(
    records: Sequence[RunRecord],
    loads: Sequence[Load],
    targets: Sequence[str],
    baselines: Mapping[str, str] | None = None,
) -> list[Cell]:
    """One Cell per (load, target) measured; ``baselines`` maps a target to its baseline row
    (the baseline forwarder on the same parser) for the rps/baseline ratio."""
    baselines = baselines or {}
    cells: list[Cell] = []
    for load in loads:
        by_target: dict[str, Cell] = {}
        for target in targets:
            measured = [
                r.result
                for r in records
                if r.load == load.name and r.target == target and r.rep >= 0
            ]
            if not measured:
                continue
            rps = [r.rps for r in measured]
            med = statistics.median(rps)
            labels = sorted({k for r in measured for k in r.cpu_pct})
            cell = Cell(
                load=load.name,
                target=target,
                reps=len(measured),
                rps_median=round(med, 1),
                rps_min=round(min(rps), 1),
                rps_max=round(max(rps), 1),
                rps_spread_pct=round(100 * (max(rps) - min(rps)) / med, 1) if med else 0.0,
                p50_us=statistics.median(r.latency_us["p50"] for r in measured),
                p90_us=statistics.median(r.latency_us["p90"] for r in measured),
                p99_us=statistics.median(r.latency_us["p99"] for r in measured),
                p50_us_min=min(r.latency_us["p50"] for r in measured),
                p50_us_max=max(r.latency_us["p50"] for r in measured),
                p99_us_min=min(r.latency_us["p99"] for r in measured),
                p99_us_max=max(r.latency_us["p99"] for r in measured),
                cpu_pct={
                    k: round(statistics.median(r.cpu_pct.get(k, 0.0) for r in measured), 1)
                    for k in labels
                },
                errors=sum(sum(r.errors.values()) for r in measured),
                problems=sum(1 for r in measured if r.problems),
            )
            if cell.p50_us > 0:
                cell.p99_over_p50 = round(cell.p99_us / cell.p50_us, 2)
            _add_cpu(cell, measured)
            by_target[target] = cell
            cells.append(cell)
        for cell in by_target.values():
            base = by_target.get(baselines.get(cell.target, ""))
            if base is not None and base.rps_median > 0 and base is not cell:
                cell.baseline = base.target
                cell.rps_vs_baseline = round(cell.rps_median / base.rps_median, 3)
                if base.cpu_us_per_request and cell.cpu_us_per_request:
                    cell.req_per_cpu_vs_baseline = round(
                        base.cpu_us_per_request / cell.cpu_us_per_request, 3
                    )
            for ref_name, attr in (("direct", "direct"), ("nginx", "nginx")):
                ref = by_target.get(ref_name)
                if ref is None or ref.rps_median <= 0 or cell.rps_median <= 0:
                    continue
                setattr(cell, f"rps_vs_{attr}", round(cell.rps_median / ref.rps_median, 3))
                setattr(cell, f"p50_added_us_vs_{attr}", round(cell.p50_us - ref.p50_us, 1))
                if ref.p99_us > 0:
                    setattr(cell, f"p99_vs_{attr}", round(cell.p99_us / ref.p99_us, 2))
    return cells


def _per_request_us(result: WrkResult) -> tuple[float, float] | None:
    """(user, sys) microseconds of the proxy's CPU per completed request of one run."""
    if PROXY not in result.cpu_user_s or not result.requests:
        return None
    scale = 1e6 / result.requests
    return result.cpu_user_s[PROXY] * scale, result.cpu_sys_s.get(PROXY, 0.0) * scale


def _add_cpu(cell: Cell, measured: Sequence[WrkResult]) -> None:
    split = [us for r in measured if (us := _per_request_us(r)) is not None]
    if not split:
        return
    total = [u + s for u, s in split]
    med = statistics.median(total)
    cell.cpu_us_per_request = round(med, 1)
    cell.cpu_user_us_per_request = round(statistics.median(u for u, _ in split), 1)
    cell.cpu_sys_us_per_request = round(statistics.median(s for _, s in split), 1)
    cell.cpu_us_min = round(min(total), 1)
    cell.cpu_us_max = round(max(total), 1)
    cell.cpu_spread_pct = round(100 * (max(total) - min(total)) / med, 1) if med else 0.0


@dataclass
class Pair:
    """Two targets compared repetition by repetition, each repetition having run them back
    to back: ``top`` over ``bottom`` by rps, and by requests per CPU-second (``bottom``'s CPU
    per request over ``top``'s). Both read as "top's throughput is this many times bottom's";
    a drift slower than one pair cancels out of the per-repetition ratios."""

    load: str
    top: str
    bottom: str
    reps: list[int]  # the repetitions in which both ran (0-based)
    rps_ratios: list[float]  # per repetition, in rep order
    cpu_ratios: list[float]  # per repetition where both have CPU figures
    rps_ratio: float | None  # median of rps_ratios
    cpu_ratio: float | None  # median of cpu_ratios
    rps_ratio_of_medians: float | None  # top's rps median over bottom's
    cpu_ratio_of_medians: float | None  # bottom's median CPU per request over top's


def pair_up(
    records: Sequence[RunRecord], cells: Sequence[Cell], load: str, top: str, bottom: str
) -> Pair:
    def runs(target: str) -> dict[int, WrkResult]:
        return {
            r.rep: r.result
            for r in records
            if r.load == load and r.target == target and r.rep >= 0 and r.result.requests
        }

    above, below = runs(top), runs(bottom)
    reps = sorted(above.keys() & below.keys())
    rps = [round(above[n].rps / below[n].rps, 3) for n in reps if below[n].rps > 0]
    cpu = [
        round(b / a, 3)
        for n in reps
        if (a := above[n].cpu_us_per_request.get(PROXY))
        and (b := below[n].cpu_us_per_request.get(PROXY))
    ]
    cell = {c.target: c for c in cells if c.load == load}
    hi, lo = cell.get(top), cell.get(bottom)
    rps_of_medians = cpu_of_medians = None
    if hi is not None and lo is not None:
        if lo.rps_median > 0:
            rps_of_medians = round(hi.rps_median / lo.rps_median, 3)
        if hi.cpu_us_per_request and lo.cpu_us_per_request:
            cpu_of_medians = round(lo.cpu_us_per_request / hi.cpu_us_per_request, 3)
    return Pair(
        load,
        top,
        bottom,
        reps,
        rps,
        cpu,
        round(statistics.median(rps), 3) if rps else None,
        round(statistics.median(cpu), 3) if cpu else None,
        rps_of_medians,
        cpu_of_medians,
    )


def noise_warnings(cells: Sequence[Cell]) -> list[str]:
    out = [
        f"noisy: {c.load} / {c.target}: rps spread {c.rps_spread_pct:.0f}% across {c.reps} "
        f"repetitions (more than {NOISY_SPREAD_PCT:.0f}%)"
        for c in cells
        if c.reps > 1 and c.rps_spread_pct > NOISY_SPREAD_PCT
    ]
    out += [
        f"noisy: {c.load} / {c.target}: CPU per request spread {c.cpu_spread_pct:.0f}% across "
        f"{c.reps} repetitions (more than {NOISY_CPU_SPREAD_PCT:.0f}%)"
        for c in cells
        if c.reps > 1 and c.cpu_spread_pct is not None and c.cpu_spread_pct > NOISY_CPU_SPREAD_PCT
    ]
    others = [c.cpu_pct.get("other", 0.0) for c in cells]
    if others and (worst := max(others)) > OTHER_CPU_WARN_PCT:
        out.append(
            f"noisy: processes outside the benchmark used up to {worst:.0f}% of a core during "
            f"the runs (median per cell; column 'CPU other'; more than {OTHER_CPU_WARN_PCT:.0f}%)"
        )
    return out


# --- formatting ----------------------------------------------------------------------------


def _us(v: float) -> str:
    return f"{v:.0f}us" if v < 1000 else f"{v / 1000:.2f}ms"


def _ratio(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _added(v: float | None) -> str:
    return "-" if v is None else f"{v:+.0f}us"


def _cpu_per_request(c: Cell) -> str:
    if c.cpu_us_per_request is None:
        return "-"
    return (
        f"{c.cpu_us_per_request:.0f}us ({c.cpu_user_us_per_request or 0:.0f}"
        f"+{c.cpu_sys_us_per_request or 0:.0f})"
    )


def format_pairs(pairs: Sequence[Pair]) -> str:
    """One line per pair: the per-repetition ratios, their median, the ratio of medians."""

    def listed(values: Sequence[float]) -> str:
        return " ".join(f"{v:.2f}" for v in values) or "-"

    return "\n".join(
        f"  {p.load} {p.top} / {p.bottom}: rps {listed(p.rps_ratios)}, median "
        f"{_ratio(p.rps_ratio)} (of medians {_ratio(p.rps_ratio_of_medians)}); "
        f"req/CPU-s {listed(p.cpu_ratios)}, median {_ratio(p.cpu_ratio)} "
        f"(of medians {_ratio(p.cpu_ratio_of_medians)})"
        for p in pairs
    )


def _table(rows: list[list[str]], right: set[int]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for n, row in enumerate(rows):
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def format_load_table(load: Load, cells: Sequence[Cell]) -> str:
    header = [
        "target",
        "rps median",
        "rps min-max",
        "spread",
        "p50",
        "p99",
        "p99/p50",
        "CPU proxy",
        "CPU origin",
        "CPU wrk",
        "CPU other",
        "CPU/req (usr+sys)",
        "CPU spread",
        "rps/direct",
        "rps/nginx",
        "rps/baseline",
        "req/CPU-s / baseline",
        "+p50 vs direct",
        "+p50 vs nginx",
        "errors",
    ]
    rows = [header]
    for c in cells:
        if c.load != load.name:
            continue
        rows.append(
            [
                c.target,
                f"{c.rps_median:,.0f}",
                f"{c.rps_min:,.0f}-{c.rps_max:,.0f}",
                f"{c.rps_spread_pct:.0f}%",
                _us(c.p50_us),
                _us(c.p99_us),
                _ratio(c.p99_over_p50),
                f"{c.cpu_pct['proxy']:.0f}%" if "proxy" in c.cpu_pct else "-",
                f"{c.cpu_pct.get('origin', 0.0):.0f}%",
                f"{c.cpu_pct.get('wrk', 0.0):.0f}%",
                f"{c.cpu_pct.get('other', 0.0):.0f}%",
                _cpu_per_request(c),
                "-" if c.cpu_spread_pct is None else f"{c.cpu_spread_pct:.0f}%",
                _ratio(c.rps_vs_direct),
                _ratio(c.rps_vs_nginx),
                _ratio(c.rps_vs_baseline),
                _ratio(c.req_per_cpu_vs_baseline),
                _added(c.p50_added_us_vs_direct),
                _added(c.p50_added_us_vs_nginx),
                str(c.errors) + (f" ({c.problems} bad runs)" if c.problems else ""),
            ]
        )
    title = (
        f"{load.name}: wrk -t1 -c{load.connections} -d{load.duration_s}s, "
        f"{load.body_bytes} B body ({load.purpose})"
    )
    table = _table(rows, right=set(range(1, len(header))))
    return title + "\n" + table + (f"\nnote: {load.note}" if load.note else "")


def format_memory(mems: Sequence[IdleConnMemory]) -> str:
    rows = [
        [
            "target",
            "RSS at start",
            "RSS baseline",
            f"RSS +{mems[0].connections} idle" if mems else "RSS loaded",
            "per connection",
            "after close",
            "fds",
            "procs",
            "problems",
        ]
    ]
    for m in mems:
        rows.append(
            [
                m.target,
                "-" if m.rss_at_ready_kib is None else f"{m.rss_at_ready_kib / 1024:.1f} MiB",
                f"{m.rss_baseline_kib / 1024:.1f} MiB",
                f"{m.rss_loaded_kib / 1024:.1f} MiB",
                f"{m.per_connection_bytes / 1024:.1f} KiB",
                f"{m.rss_after_close_kib / 1024:.1f} MiB",
                str(m.open_fds_loaded),
                str(m.processes),
                "; ".join(m.problems) or "none",
            ]
        )
    return _table(rows, right=set(range(1, 8)))


def format_growth(g: Growth) -> str:
    w = g.wrk
    verdict = "flat" if g.flat else "GROWING"
    return (
        f"{g.target}: {w.requests:,} of {g.requests_wanted:,} requests (-c50, 1 KiB) in "
        f"{w.duration_s:.1f} s ({w.rps:,.0f} rps, time bound {g.time_bound_s} s); RSS "
        f"{g.rss_before_kib / 1024:.1f} -> {g.rss_mid_kib / 1024:.1f} (mid) -> "
        f"{g.rss_after_kib / 1024:.1f} MiB (max {g.rss_max_kib / 1024:.1f}); growth "
        f"{g.growth_kib:+d} KiB = {g.bytes_per_request:+.3f} B/request, second half "
        f"{g.second_half_growth_kib:+d} KiB = {g.second_half_bytes_per_request:+.3f} B/request: "
        f"{verdict} (flat = second half grew <= 1 MiB)"
        + (f"; problems: {'; '.join(w.problems)}" if w.problems else "")
        + (f"; note: {'; '.join(w.notes)}" if w.notes else "")
    )


def to_jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    return obj


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_jsonable(data), indent=2) + "\n")
