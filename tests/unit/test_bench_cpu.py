"""The benchmark's CPU time per request and its paired comparisons (bench/), without running
wrk: the figures from /proc snapshots, the medians, the per-repetition ratios, the goals
judged on them, and the schedule that makes each pair run back to back."""

from __future__ import annotations

from pathlib import Path

from bench._goals import judge
from bench._main import Layout, interleave, make_lineup
from bench._measured import measured_numbers
from bench._procs import CLK_TCK, cpu_percent, cpu_used_s
from bench._report import Load, RunRecord, format_pairs, pair_up, summarize
from bench._wrk import WrkResult

LOAD = Load("c50-1k", 50, "1k", "/1k.bin", 1024, 5, "throughput")
HOOKED, PLAIN, BASE = "trioproxy+hook[h11]", "trioproxy[h11]", "baseline[h11]"


def _result(rps: float, cpu_us: float | None, *, seconds: float = 5.0) -> WrkResult:
    """A run of ``seconds`` at ``rps`` whose proxy used ``cpu_us`` per request, 3/4 of it user."""
    requests = round(rps * seconds)
    result = WrkResult(
        url="http://127.0.0.1:1/1k.bin",
        command="wrk",
        connections=50,
        duration_limit_s=5,
        request_limit=None,
        wall_s=seconds,
        duration_s=seconds,
        requests=requests,
        rps=rps,
        bytes_read=requests * 1200,
        bytes_per_response=1200.0,
        errors={},
        latency_us={"p50": 1000.0, "p90": 1500.0, "p99": 2000.0},
        cpu_pct={"proxy": 99.0},
    )
    if cpu_us is not None:
        total_s = cpu_us * requests / 1e6
        result.cpu_user_s = {"proxy": total_s * 0.75}
        result.cpu_sys_s = {"proxy": total_s * 0.25}
        result.cpu_us_per_request = {"proxy": cpu_us}
    return result


def _records(runs: dict[str, list[tuple[float, float | None]]]) -> list[RunRecord]:
    return [
        RunRecord(LOAD.name, target, rep, _result(rps, cpu))
        for target, reps in runs.items()
        for rep, (rps, cpu) in enumerate(reps)
    ]


def test_cpu_used_counts_user_and_sys_of_every_process_of_the_tree() -> None:
    before = {10: (100, 50), 11: (20, 5)}
    # 12 was born during the run (counts from zero); 11 is gone (lost, as Linux accounts it)
    after = {10: (400, 150), 12: (30, 10)}
    user, sys = cpu_used_s(before, after)
    assert (user, sys) == ((300 + 30) / CLK_TCK, (100 + 10) / CLK_TCK)
    assert cpu_percent(before, after, wall_s=2.0) == 100.0 * (user + sys) / 2.0


def test_a_cell_gives_the_median_cpu_per_request_and_its_split() -> None:
    records = _records({PLAIN: [(4000, 200.0), (3000, 240.0), (5000, 210.0)]})
    (cell,) = summarize(records, [LOAD], [PLAIN])
    assert cell.cpu_us_per_request == 210.0
    assert cell.cpu_user_us_per_request == 157.5
    assert cell.cpu_sys_us_per_request == 52.5
    assert (cell.cpu_us_min, cell.cpu_us_max) == (200.0, 240.0)
    assert cell.cpu_spread_pct == round(100 * 40 / 210, 1)


def test_cpu_against_the_baseline_reads_as_throughput_does() -> None:
    records = _records({BASE: [(5000, 150.0)], PLAIN: [(4000, 200.0)], "direct": [(9e4, None)]})
    cells = {
        c.target: c for c in summarize(records, [LOAD], [BASE, PLAIN, "direct"], {PLAIN: BASE})
    }
    assert cells[PLAIN].rps_vs_baseline == 0.8
    assert cells[PLAIN].req_per_cpu_vs_baseline == 0.75  # a third more CPU per request
    assert cells["direct"].cpu_us_per_request is None  # no proxy process to measure


def test_pairs_are_taken_within_each_repetition() -> None:
    # A drift: rep 2 runs everything slower. The pairs cancel it; the medians do not.
    records = _records(
        {
            HOOKED: [(3900, 205.0), (2000, 400.0), (3800, 210.0)],
            PLAIN: [(4000, 200.0), (2050, 390.0), (4100, 195.0)],
        }
    )
    cells = summarize(records, [LOAD], [HOOKED, PLAIN])
    pair = pair_up(records, cells, LOAD.name, HOOKED, PLAIN)
    assert pair.reps == [0, 1, 2]
    assert pair.rps_ratios == [0.975, round(2000 / 2050, 3), round(3800 / 4100, 3)]
    assert pair.rps_ratio == 0.975
    assert pair.rps_ratio_of_medians == round(3800 / 4000, 3)
    assert pair.cpu_ratios == [round(200 / 205, 3), 0.975, round(195 / 210, 3)]
    assert pair.cpu_ratio == 0.975
    assert pair.cpu_ratio_of_medians == round(200 / 210, 3)
    assert "rps 0.97 0.98 0.93, median 0.97" in format_pairs([pair])


def test_a_repetition_one_side_lacks_is_not_paired() -> None:
    records = _records({HOOKED: [(3900, 205.0), (3800, 210.0)], PLAIN: [(4000, 200.0)]})
    pair = pair_up(records, summarize(records, [LOAD], [HOOKED, PLAIN]), LOAD.name, HOOKED, PLAIN)
    assert pair.reps == [0]
    assert pair.rps_ratios == [0.975]


def _goals(runs: dict[str, list[tuple[float, float | None]]]) -> dict[str, str]:
    records = _records(runs)
    cells = summarize(records, [LOAD], list(runs))
    pairs = [pair_up(records, cells, LOAD.name, HOOKED, PLAIN)]
    goals = judge(
        cells, [], w1=None, w2=None, auto_pair=None, hook_pair=(HOOKED, PLAIN), rss=[], memory=[],
        pairs=pairs,
    )  # fmt: skip
    return {g.topic: g.line() for g in goals}


def test_the_hook_goal_is_judged_on_the_median_of_the_pairs() -> None:
    # Rep 3's plain run was fast and rep 1's hooked run typical: the medians' ratio
    # (3800 / 4100 = 0.93) sets them against each other and misses; two pairs of three meet.
    line = _goals(
        {
            HOOKED: [(3800, 205.0), (4300, 206.0), (3000, 207.0)],
            PLAIN: [(3900, 200.0), (4500, 201.0), (4100, 199.0)],
        }
    )["hooks"]
    assert "= 0.96 (target >= 0.95): MET" in line
    assert "median of paired reps 0.97 0.96 0.73 (2 of 3 meet)" in line
    assert "rps medians' ratio 0.93" in line
    assert "by CPU per request 0.98, agrees" in line


def test_a_cpu_ratio_on_the_other_side_of_the_limit_is_said() -> None:
    line = _goals({HOOKED: [(3950, 230.0)], PLAIN: [(4000, 200.0)]})["hooks"]
    assert ": MET;" in line
    assert "by CPU per request 0.87, DISAGREES: not beyond doubt" in line


def test_per_core_is_judged_beside_isolation_on_the_same_pairs() -> None:
    records = _records(
        {PLAIN: [(4000, 200.0), (4200, 190.0)], BASE: [(5000, 150.0), (5000, 152.0)]}
    )
    cells = summarize(records, [LOAD], [PLAIN, BASE])
    pairs = [pair_up(records, cells, LOAD.name, PLAIN, BASE)]
    goals = judge(cells, ["h11"], w1=None, w2=None, auto_pair=None, rss=[], memory=[], pairs=pairs)
    ratios = {(g.topic, g.limit): g for g in goals if "rps" in g.what}
    assert ratios[("isolation", 0.95)].value == ratios[("per core", 1.0)].value == 0.82
    assert ratios[("per core", 1.0)].cpu_value == round((0.75 + 152 / 190) / 2, 3)
    assert ratios[("per core", 1.0)].met is False


def test_each_repetition_runs_neighbours_back_to_back_and_alternates_the_first() -> None:
    schedule = interleave(["a", "b", "c"], 3, warmup=True)
    assert schedule == [
        (-1, "a"), (-1, "b"), (-1, "c"),
        (0, "a"), (0, "b"), (0, "c"),
        (1, "c"), (1, "b"), (1, "a"),
        (2, "a"), (2, "b"), (2, "c"),
    ]  # fmt: skip
    assert interleave(["a"], 2, warmup=False) == [(0, "a"), (1, "a")]


def test_the_hooked_row_neighbours_the_plain_one_it_is_compared_with() -> None:
    layout = Layout(False, None, None, None, None, 2, "", (0, 1))
    lineup = make_lineup(
        ["baseline", "trioproxy", "hooked"], ["h11-mypyc", "h11"], [], layout, ["tp"], Path("/x")
    )
    names = [s.name for s in lineup.specs]
    assert names[:3] == ["baseline[h11-mypyc]", "trioproxy[h11-mypyc]", "trioproxy+hook[h11-mypyc]"]
    assert lineup.paired() == [
        ("trioproxy[h11-mypyc]", "baseline[h11-mypyc]"),
        ("trioproxy[h11]", "baseline[h11]"),
        ("trioproxy+hook[h11-mypyc]", "trioproxy[h11-mypyc]"),
    ]


def test_the_record_keeps_its_keys_and_adds_cpu_and_pairs() -> None:
    records = _records({HOOKED: [(3880, 205.4)], PLAIN: [(4000, 200.0)]})
    cells = summarize(records, [LOAD], [HOOKED, PLAIN])
    pairs = [pair_up(records, cells, LOAD.name, HOOKED, PLAIN)]
    numbers = measured_numbers(
        date="2026-12-06", commit="abc", cells=cells, memory=[], idle_rss=[], pairs=pairs
    )
    assert numbers["rps"] == {f"c50-1k {HOOKED}": 3880, f"c50-1k {PLAIN}": 4000}
    assert numbers["cpu_us_per_request"] == {f"c50-1k {HOOKED}": 205, f"c50-1k {PLAIN}": 200}
    assert numbers["paired"] == {
        f"c50-1k {HOOKED} / {PLAIN}": {
            "rps_pairs": [0.97],
            "rps_pairs_median": 0.97,
            "rps_medians_ratio": 0.97,
            "cpu_ratio": 0.97,
        }
    }
