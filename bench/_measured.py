"""The one source of the project's measured numbers: ``bench/measured.json``.

``bench/run.py --record`` writes it from a run (this module picks the figures); the docs, the
module file and the tests quote it, and ``tests/unit/test_measured_numbers.py`` checks that
every quoted figure is the recorded one, so a number cannot drift from the run it came from.
Pure: no I/O but `write_measured`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench._connmem import GET, POST, ConnMeasures
from bench._goals import ProcRss
from bench._memory import IdleConnMemory
from bench._report import Cell, Pair

MEASURED = Path(__file__).resolve().parent / "measured.json"


def measured_numbers(
    *,
    date: str,
    commit: str,
    cells: Sequence[Cell],
    memory: Sequence[IdleConnMemory],
    idle_rss: Sequence[ProcRss],
    conn: Sequence[ConnMeasures] = (),
    pairs: Sequence[Pair] = (),
) -> dict[str, Any]:
    """The figures worth quoting, rounded as they are quoted (rps whole, sizes to 0.1, CPU
    microseconds whole, ratios to 0.01)."""
    rss: dict[str, float] = {}
    for r in idle_rss:
        role = "worker" if r.role.startswith("worker") else r.role
        rss.setdefault(role, round(r.rss_kib / 1024, 1))
    per_connection = [
        round(m.per_connection_bytes / 1024, 1) for m in memory if m.target.startswith("trioproxy")
    ]
    per_target: dict[str, dict[str, float]] = {}
    for c in conn:
        figures: dict[str, float] = {}
        if c.parked is not None:
            figures["parked_request_kib"] = round(c.parked.per_request_bytes / 1024, 1)
        for method, key in ((GET, "burst_get_delay_ms"), (POST, "burst_post_delay_ms")):
            if (delay := c.burst_delay_ms(method)) is not None:
                figures[key] = round(delay)
        if figures:
            per_target[c.target] = figures
    return {
        "connection_measures": per_target,
        "date": date,
        "commit": commit,
        "idle_rss_mib": rss,
        "idle_connection_kib": max(per_connection) if per_connection else None,
        "rps": {f"{c.load} {c.target}": round(c.rps_median) for c in cells},
        # The proxy's user + sys CPU time per request, median over the repetitions
        "cpu_us_per_request": {
            f"{c.load} {c.target}": round(c.cpu_us_per_request)
            for c in cells
            if c.cpu_us_per_request is not None
        },
        # "LOAD TOP / BOTTOM": the paired throughput ratios (bench/README.md, "Paired goals")
        "paired": {
            f"{p.load} {p.top} / {p.bottom}": {
                "rps_pairs": [round(v, 2) for v in p.rps_ratios],
                "rps_pairs_median": _two(p.rps_ratio),
                "rps_medians_ratio": _two(p.rps_ratio_of_medians),
                "cpu_ratio": _two(p.cpu_ratio),
            }
            for p in pairs
        },
        "p99_over_p50": {
            f"{c.load} {c.target}": round(c.p99_over_p50, 2)
            for c in cells
            if c.p99_over_p50 is not None
        },
    }


def _two(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def write_measured(numbers: dict[str, Any], path: Path = MEASURED) -> None:
    path.write_text(json.dumps(numbers, indent=2, sort_keys=True) + "\n")


def read_measured(path: Path = MEASURED) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data
