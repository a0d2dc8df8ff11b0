"""The project's numeric targets, judged against one run's summary: met, missed, or not measured.

Isolation, per parser: at c50-1k trioproxy's p99 <= 4 x its p50, and its
throughput >= 0.95 x the baseline forwarder's on the same parser; per core, >= 1.0 x. Hooks:
a no-op request hook on every request >= 0.95 x the throughput without. These throughput
ratios are paired: the value judged is the median of the per-repetition ratios (each
repetition ran both targets back to back), the ratio of the rps medians and the same ratio by
CPU time per request (requests per CPU-second) are given beside it, and the line says whether
the CPU ratio agrees with the verdict. The process model:
1 -> 2 workers scaling >= 1.7 x at c50-1k; idle RSS <= 24 MiB for a single process (admin
listener off, as the bench runs it) and <= 16 MiB for the supervisor; <= 6 KiB per idle
keep-alive connection (was 8 KiB), <= 12 KiB per request parked on a slow origin; and 500
requests arriving together delay another client's GET by <= 60 ms (the 64 KiB POST burst
is printed as information). ``--workers auto`` against nginx ``worker_processes auto`` has
no target: it is printed as information, as nginx's figures are. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bench._connmem import GET, POST, ConnMeasures
from bench._memory import IdleConnMemory
from bench._report import Cell, Pair

P99_OVER_P50_MAX = 4.0
RPS_VS_BASELINE_MIN = 0.95
PER_CORE_MIN = 1.0  # every feature on, for no more than the bare forwarder costs
SCALING_MIN = 1.7
HOOK_RPS_MIN = 0.95  # a no-op hook on every request: at most 5 % fewer requests per second
SINGLE_RSS_MAX_MIB = 24.0
SUPERVISOR_RSS_MAX_MIB = 16.0
PER_CONNECTION_MAX_KIB = 6.0
PER_PARKED_REQUEST_MAX_KIB = 12.0
BURST_DELAY_MAX_MS = 60.0  # 500 requests arriving together, another client's GET meanwhile
LOAD = "c50-1k"


@dataclass(frozen=True)
class Goal:
    topic: str  # what the target is about: "isolation", "process model"
    what: str
    value: float | None  # None: not measured in this run
    op: str  # "<=", ">=", or "" for information only
    limit: float | None
    unit: str = ""
    # A paired throughput ratio: the value is the median of ``pairs`` when there are any
    pairs: tuple[float, ...] = ()
    of_medians: float | None = None  # the ratio of the two rows' rps medians
    cpu_value: float | None = None  # the same ratio by CPU time per request (median of pairs)

    def _meets(self, value: float | None) -> bool | None:
        if value is None or self.limit is None:
            return None
        return value <= self.limit if self.op == "<=" else value >= self.limit

    @property
    def met(self) -> bool | None:
        return self._meets(self.value)

    @property
    def cpu_met(self) -> bool | None:
        """The verdict the CPU-per-request ratio gives; None when it was not measured."""
        return self._meets(self.cpu_value)

    def line(self) -> str:
        value = "not measured" if self.value is None else f"{self.value:.2f}{self.unit}"
        if self.op == "":
            return f"{self.topic}: {self.what} = {value}"
        verdict = {True: "MET", False: "MISSED", None: "NOT MEASURED"}[self.met]
        text = (
            f"{self.topic}: {self.what} = {value} "
            f"(target {self.op} {self.limit:g}{self.unit}): {verdict}"
        )
        return text + self._paired_detail()

    def _paired_detail(self) -> str:
        if not self.pairs and self.of_medians is None and self.cpu_value is None:
            return ""
        parts = []
        if self.pairs:
            meeting = sum(1 for v in self.pairs if self._meets(v))
            listed = " ".join(f"{v:.2f}" for v in self.pairs)
            parts.append(f"median of paired reps {listed} ({meeting} of {len(self.pairs)} meet)")
        if self.of_medians is not None:
            parts.append(f"rps medians' ratio {self.of_medians:.2f}")
        if self.cpu_value is not None and self.met is not None:
            agrees = "agrees" if self.cpu_met == self.met else "DISAGREES: not beyond doubt"
            parts.append(f"by CPU per request {self.cpu_value:.2f}, {agrees}")
        return "; " + "; ".join(parts)


@dataclass(frozen=True)
class ProcRss:
    """Idle RSS of one trioproxy process, read before its first request."""

    target: str
    role: str  # "single", "supervisor" or "worker N"
    pid: int | None
    rss_kib: int


def _cell(cells: Sequence[Cell], target: str) -> Cell | None:
    return next((c for c in cells if c.load == LOAD and c.target == target), None)


def _rps_ratio(cells: Sequence[Cell], top: str, bottom: str) -> float | None:
    """``top``'s median rps over ``bottom``'s at LOAD; None when either was not measured."""
    above, below = _cell(cells, top), _cell(cells, bottom)
    if above is None or below is None or not below.rps_median:
        return None
    return above.rps_median / below.rps_median


def _paired(topic: str, what: str, limit: float, pair: Pair | None, fallback: float | None) -> Goal:
    """A throughput goal judged on the median of the per-repetition ratios (the ratio of
    the medians when no repetition has both rows)."""
    if pair is None:
        return Goal(topic, what, fallback, ">=", limit)
    return Goal(
        topic,
        what,
        pair.rps_ratio if pair.rps_ratios else pair.rps_ratio_of_medians,
        ">=",
        limit,
        pairs=tuple(pair.rps_ratios),
        of_medians=pair.rps_ratio_of_medians,
        cpu_value=pair.cpu_ratio if pair.cpu_ratios else pair.cpu_ratio_of_medians,
    )


def _find_pair(pairs: Sequence[Pair], top: str, bottom: str) -> Pair | None:
    return next((p for p in pairs if p.load == LOAD and p.top == top and p.bottom == bottom), None)


def judge(
    cells: Sequence[Cell],
    parsers: Sequence[str],
    *,
    w2: str | None,
    w1: str | None,
    auto_pair: tuple[str, str] | None,
    hook_pair: tuple[str, str] | None = None,
    rss: Sequence[ProcRss],
    memory: Sequence[IdleConnMemory],
    conn: Sequence[ConnMeasures] = (),
    pairs: Sequence[Pair] = (),
) -> list[Goal]:
    """``w1``/``w2``: the 1- and 2-worker rows for the scaling; ``auto_pair``: the
    (trioproxy auto, nginx auto) rows; ``pairs``: the paired comparisons of this run (the
    throughput goals of a pair not among them fall back to the rps medians' ratio)."""
    goals: list[Goal] = []
    for parser in parsers:
        proxy = _cell(cells, f"trioproxy[{parser}]")
        base = _cell(cells, f"baseline[{parser}]")
        goals.append(
            Goal(
                "isolation",
                f"{LOAD} trioproxy[{parser}] p99/p50",
                proxy.p99_over_p50 if proxy else None,
                "<=",
                P99_OVER_P50_MAX,
            )
        )
        ratio = proxy.rps_median / base.rps_median if proxy and base and base.rps_median else None
        rows = (f"trioproxy[{parser}]", f"baseline[{parser}]")
        what = f"{LOAD} rps {rows[0]} / {rows[1]}"
        pair = _find_pair(pairs, *rows)
        goals.append(_paired("isolation", what, RPS_VS_BASELINE_MIN, pair, ratio))
        goals.append(_paired("per core", what, PER_CORE_MIN, pair, ratio))
        if base is not None:
            goals.append(
                Goal("isolation", f"{LOAD} baseline[{parser}] p99/p50", base.p99_over_p50, "", None)
            )
    if w1 is not None and w2 is not None:
        scaling = _rps_ratio(cells, w2, w1)
        goals.append(
            Goal("process model", f"{LOAD} scaling {w2} / {w1}", scaling, ">=", SCALING_MIN)
        )
    if auto_pair is not None:
        ratio = _rps_ratio(cells, *auto_pair)
        goals.append(
            Goal("process model", f"{LOAD} rps {auto_pair[0]} / {auto_pair[1]}", ratio, "", None)
        )
    if hook_pair is not None:
        ratio = _rps_ratio(cells, *hook_pair)
        what = f"{LOAD} rps {hook_pair[0]} / {hook_pair[1]}"
        goals.append(_paired("hooks", what, HOOK_RPS_MIN, _find_pair(pairs, *hook_pair), ratio))
    for r in rss:
        limit = {"single": SINGLE_RSS_MAX_MIB, "supervisor": SUPERVISOR_RSS_MAX_MIB}.get(r.role)
        goals.append(
            Goal(
                "process model",
                f"idle RSS {r.target} {r.role}",
                r.rss_kib / 1024,
                "<=" if limit is not None else "",
                limit,
                " MiB",
            )
        )
    for m in memory:
        if m.target.startswith("trioproxy"):
            goals.append(
                Goal(
                    "process model",
                    f"RSS per idle keep-alive connection {m.target}",
                    m.per_connection_bytes / 1024,
                    "<=",
                    PER_CONNECTION_MAX_KIB,
                    " KiB",
                )
            )
    for c in conn:
        ours = c.target.startswith("trioproxy")  # nginx: for reference, no target
        if c.parked is not None:
            goals.append(
                Goal(
                    "process model",
                    f"RSS per request parked on a silent origin {c.target}",
                    c.parked.per_request_bytes / 1024,
                    "<=" if ours else "",
                    PER_PARKED_REQUEST_MAX_KIB if ours else None,
                    " KiB",
                )
            )
        for method in (GET, POST):
            if (delay := c.burst_delay_ms(method)) is None:
                continue
            target = ours and method == GET
            goals.append(
                Goal(
                    "isolation",
                    f"a burst of {c.bursts[0].requests} {method}: another client's delay "
                    f"{c.target}",
                    delay,
                    "<=" if target else "",
                    BURST_DELAY_MAX_MS if target else None,
                    " ms",
                )
            )
    return goals
