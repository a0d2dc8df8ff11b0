"""Memory: RSS per idle keep-alive connection, and RSS growth over a long run.

Idle connections: a bounded client opens ``warm`` connections (one GET each, kept open),
samples the target's VmRSS as the baseline, opens ``n`` more the same way, samples again,
checks that a few of them still answer, and closes them all. Per connection is
(loaded - baseline) / n. RSS is /proc/PID/status VmRSS, summed over the process tree.

Growth: wrk sends a fixed number of requests (-c50, 1 KiB) while VmRSS is sampled every
``tick``; the verdict looks at the second half of the run, after pools and caches have
filled, and calls it flat when RSS grew by at most 1 MiB there.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench._http import Connection, HttpError
from bench._procs import ProcessRegistry, fd_count, process_tree, tree_rss_kib
from bench._wrk import WrkResult, run_wrk

FLAT_TOLERANCE_KIB = 1024


@dataclass
class IdleConnMemory:
    target: str
    connections: int  # asked for
    opened: int  # opened and answered 200
    rss_at_ready_kib: int | None  # after start, before the first request (trioproxy only)
    rss_baseline_kib: int  # with `warm` connections open
    rss_loaded_kib: int  # with warm + opened connections open
    rss_after_close_kib: int
    per_connection_bytes: float
    open_fds_loaded: int | None
    processes: int
    seconds_to_open: float
    problems: list[str] = field(default_factory=list)


def _rss(pid: int) -> int:
    value = tree_rss_kib(pid)
    if value is None:
        raise HttpError(f"cannot read the RSS of pid {pid}: the process is gone")
    return value


def _open(
    port: int, path: str, count: int, deadline: float, into: list[Connection]
) -> tuple[int, str | None]:
    """Open ``count`` connections with one GET each; (how many answered 200, first error)."""
    for i in range(count):
        if time.monotonic() > deadline:
            return i, f"time bound reached after {i} of {count} connections"
        try:
            conn = Connection("127.0.0.1", port, timeout_s=5.0)
        except OSError as exc:
            return i, f"connection {i + 1} of {count} failed to open: {exc}"
        into.append(conn)
        try:
            resp = conn.get(path)
        except (OSError, HttpError) as exc:
            return i, f"request on connection {i + 1} of {count} failed: {exc}"
        if resp.status != 200:
            return i, f"request on connection {i + 1} of {count} got status {resp.status}"
    return count, None


def idle_connection_memory(
    target: str,
    pid: int,
    port: int,
    path: str,
    n: int,
    *,
    rss_at_ready_kib: int | None,
    warm: int = 10,
    time_bound_s: float = 60.0,
) -> IdleConnMemory:
    deadline = time.monotonic() + time_bound_s
    warm_conns: list[Connection] = []
    conns: list[Connection] = []
    problems: list[str] = []
    try:
        _, err = _open(port, path, warm, deadline, warm_conns)
        if err is not None:
            problems.append(f"warm-up: {err}")
        time.sleep(0.3)
        baseline = _rss(pid)
        t0 = time.monotonic()
        opened, err = _open(port, path, n, deadline, conns)
        if err is not None:
            problems.append(err)
        seconds = time.monotonic() - t0
        time.sleep(0.5)
        loaded = _rss(pid)
        fds = sum(fd_count(p) or 0 for p in process_tree(pid))
        # They must still be open and usable, not closed behind our back.
        for conn in conns[:3] + conns[-3:]:
            try:
                if conn.get(path).status != 200:
                    problems.append("an idle connection answered a second request with non-200")
                    break
            except (OSError, HttpError) as exc:
                problems.append(f"an idle connection no longer answers: {exc}")
                break
    finally:
        for conn in warm_conns + conns:
            conn.close()
    time.sleep(0.5)
    after = _rss(pid)
    return IdleConnMemory(
        target=target,
        connections=n,
        opened=opened,
        rss_at_ready_kib=rss_at_ready_kib,
        rss_baseline_kib=baseline,
        rss_loaded_kib=loaded,
        rss_after_close_kib=after,
        per_connection_bytes=round((loaded - baseline) * 1024 / opened, 1) if opened else 0.0,
        open_fds_loaded=fds,
        processes=len(process_tree(pid)),
        seconds_to_open=round(seconds, 2),
        problems=problems,
    )


@dataclass
class Growth:
    target: str
    requests_wanted: int
    time_bound_s: int
    wrk: WrkResult
    rss_before_kib: int
    rss_mid_kib: int
    rss_after_kib: int
    rss_max_kib: int
    growth_kib: int
    second_half_growth_kib: int
    bytes_per_request: float  # over the whole run
    second_half_bytes_per_request: float
    flat: bool
    samples: list[tuple[float, int]]  # (seconds since start, RSS KiB)


def growth_check(
    reg: ProcessRegistry,
    target: str,
    pid: int,
    url: str,
    *,
    requests: int,
    expected_rps: float | None,
    wrk_cpus: str | None,
    workdir: Path,
    expected_body: int,
    watch: dict[str, int],
    max_seconds: int | None = None,
) -> Growth:
    # The time bound: three times the time at the expected rate (or 300 rps when unknown),
    # at least 10 s, at most ``max_seconds`` (the run's remaining time budget).
    rate = max(100.0, expected_rps / 3) if expected_rps else 300.0
    bound = max(10, math.ceil(requests / rate))
    if max_seconds is not None:
        bound = max(10, min(bound, max_seconds))
    tick = max(0.5, bound / 1000)  # at most ~1000 samples
    samples: list[tuple[float, int]] = []
    rss_before = _rss(pid)
    t0 = time.monotonic()

    def sample() -> None:
        if (value := tree_rss_kib(pid)) is not None:
            samples.append((round(time.monotonic() - t0, 2), value))

    result = run_wrk(
        reg,
        url,
        connections=50,
        duration_s=bound,
        cpus=wrk_cpus,
        workdir=workdir,
        expected_body=expected_body,
        watch=watch,
        request_limit=requests,
        on_tick=sample,
        tick_s=tick,
    )
    time.sleep(0.5)
    rss_after = _rss(pid)
    samples.append((round(time.monotonic() - t0, 2), rss_after))
    half = result.wall_s / 2
    mid = min(samples, key=lambda s: abs(s[0] - half))[1] if samples else rss_before
    done = max(result.requests, 1)
    second = rss_after - mid
    return Growth(
        target=target,
        requests_wanted=requests,
        time_bound_s=bound,
        wrk=result,
        rss_before_kib=rss_before,
        rss_mid_kib=mid,
        rss_after_kib=rss_after,
        rss_max_kib=max([rss_before] + [s[1] for s in samples]),
        growth_kib=rss_after - rss_before,
        second_half_growth_kib=second,
        bytes_per_request=round((rss_after - rss_before) * 1024 / done, 3),
        second_half_bytes_per_request=round(second * 1024 / max(done / 2, 1), 3),
        flat=second <= FLAT_TOLERANCE_KIB,
        samples=samples,
    )
