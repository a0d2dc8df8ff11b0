"""Run Debian's wrk (keep-alive, one thread) with a Lua reporter, and judge what it says.

The Lua ``done()`` hook prints one ``BENCHJSON {...}`` line with the request count, bytes,
socket errors, status errors and latency percentiles (microseconds, from wrk's own latency
histogram, the same numbers ``wrk --latency`` prints). For a count-bounded run the script
also counts responses: at the limit it stops the thread and drops a flag file, and the
benchmark then sends wrk SIGINT, on which wrk stops early and prints its summary as usual.

A run is clean when wrk exits 0 with zero socket errors (connect, read, write, timeout),
zero status errors (wrk counts every response with status >= 400 there: its "Non-2xx or
3xx responses" line) and a byte count that fits the expected body plus a response head per
response (a short 2xx or a 3xx would not).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shlex
import shutil
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bench._procs import (
    CpuTimes,
    ProcessRegistry,
    cpu_percent,
    cpu_used_s,
    machine_task_percent,
    tree_cpu_snapshot,
)

HEAD_SLACK_BYTES = 2048  # the most a response head may add to the body on average

_DONE_LUA = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,' ..
    '"p50":%.1f,"p90":%.1f,"p99":%.1f,"p999":%.1f,"min":%.1f,"max":%.1f,"mean":%.1f}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.min, latency.max, latency.mean))
end
"""

_LIMIT_LUA = r"""
local count = 0
local limit = %(limit)d
local flag = "%(flag)s"
response = function(status, headers, body)
  count = count + 1
  if count == limit then
    local f = io.open(flag, "w")
    if f then f:write("done\n"); f:close() end
    wrk.thread:stop()
  end
end
"""


class WrkError(Exception):
    pass


def wrk_binary() -> str | None:
    return shutil.which("wrk")


@dataclass
class WrkResult:
    """One wrk run and the CPU that each watched process tree used during it."""

    url: str
    command: str  # as run, with taskset
    connections: int
    duration_limit_s: int
    request_limit: int | None
    wall_s: float
    duration_s: float  # as wrk measured it
    requests: int
    rps: float
    bytes_read: int
    bytes_per_response: float
    errors: dict[str, int]  # connect, read, write, timeout, status (>= 400)
    latency_us: dict[str, float]  # p50, p90, p99, p999, min, max, mean
    # label -> % of one core; "wrk", and "other": every process not ours (noise)
    cpu_pct: dict[str, float]
    problems: list[str] = field(default_factory=list)
    # Each watched tree's CPU time over the run (from before wrk starts to after it exits:
    # connection set-up and teardown included), and user + sys per completed request.
    cpu_user_s: dict[str, float] = field(default_factory=dict)
    cpu_sys_s: dict[str, float] = field(default_factory=dict)
    cpu_us_per_request: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # worth saying, not failures
    stdout: str = ""  # wrk's own text, kept only when something went wrong

    @property
    def clean(self) -> bool:
        return not self.problems


def run_wrk(
    reg: ProcessRegistry,
    url: str,
    *,
    connections: int,
    duration_s: int,
    cpus: str | None,
    workdir: Path,
    expected_body: int,
    watch: Mapping[str, int],
    request_limit: int | None = None,
    on_tick: Callable[[], None] | None = None,
    tick_s: float = 0.5,
) -> WrkResult:
    """``wrk -t1 -c<connections> -d<duration_s>s --latency -s report.lua <url>``.

    ``watch`` maps a label to the root pid of a process tree whose CPU use is measured over
    the run. ``request_limit`` stops the run after that many responses (``duration_s`` then
    only bounds it). ``on_tick`` is called every ``tick_s`` while wrk runs.
    """
    binary = wrk_binary()
    if binary is None:
        raise WrkError("wrk is not installed; install it with: apt-get install -y wrk")
    workdir.mkdir(parents=True, exist_ok=True)
    flag = workdir / "wrk-limit-reached"
    flag.unlink(missing_ok=True)
    script = workdir / ("report-limit.lua" if request_limit else "report.lua")
    lua = _DONE_LUA
    if request_limit:
        lua = _LIMIT_LUA % {"limit": request_limit, "flag": str(flag)} + lua
    script.write_text(lua)
    out_path = workdir / "wrk.out"

    argv = [binary, "-t1", f"-c{connections}", f"-d{duration_s}s", "--latency"]
    argv += ["-s", str(script), url]
    hard_deadline_s = duration_s + 20.0
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    self_before = resource.getrusage(resource.RUSAGE_SELF)
    with out_path.open("wb") as out:
        # Snapshots before wrk starts (reading /proc takes milliseconds, in which wrk would
        # already be sending): every request wrk counts falls inside the CPU window.
        snaps = {label: tree_cpu_snapshot(pid) for label, pid in watch.items()}
        machine_before = CpuTimes.read()
        t0 = time.monotonic()
        proc = reg.spawn("wrk", argv, cpus=cpus, stdout=out)
        interrupted = timed_out = False
        next_tick = t0 + tick_s
        try:
            while proc.popen.poll() is None:
                now = time.monotonic()
                if now - t0 > hard_deadline_s:
                    timed_out = True
                    break
                if request_limit and not interrupted and flag.exists():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(proc.pid, signal.SIGINT)
                    interrupted = True
                if on_tick is not None and now >= next_tick:
                    on_tick()
                    next_tick = now + tick_s
                time.sleep(0.05)
            after = {label: tree_cpu_snapshot(pid) for label, pid in watch.items()}
            machine_after = CpuTimes.read()
            wall = time.monotonic() - t0
        finally:
            reg.stop(proc, grace_s=2.0)
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu_s = (children_after.ru_utime - children_before.ru_utime) + (
        children_after.ru_stime - children_before.ru_stime
    )
    cpu = {label: cpu_percent(snaps[label], after[label], wall) for label in watch}
    used = {label: cpu_used_s(snaps[label], after[label]) for label in watch}
    cpu["wrk"] = 100.0 * wrk_cpu_s / wall if wall > 0 else 0.0
    self_after = resource.getrusage(resource.RUSAGE_SELF)
    self_s = (self_after.ru_utime - self_before.ru_utime) + (
        self_after.ru_stime - self_before.ru_stime
    )
    ours = sum(cpu.values()) + (100.0 * self_s / wall if wall > 0 else 0.0)
    # Everything else the machine ran meanwhile (other users' work): the noise gauge.
    cpu["other"] = max(0.0, machine_task_percent(machine_before, machine_after, wall) - ours)

    text = out_path.read_text(errors="replace")
    result = _parse(text, url, connections, duration_s, request_limit, wall, cpu, expected_body)
    result.command = shlex.join(proc.argv)
    result.cpu_user_s = {label: round(u, 3) for label, (u, _) in used.items()}
    result.cpu_sys_s = {label: round(s, 3) for label, (_, s) in used.items()}
    if result.requests:
        result.cpu_us_per_request = {
            label: round(1e6 * (u + s) / result.requests, 1) for label, (u, s) in used.items()
        }
    if timed_out:
        result.problems.append(f"wrk did not finish within {hard_deadline_s:.0f} s; killed")
    elif proc.popen.returncode not in (0, None) and not interrupted:
        result.problems.append(f"wrk exited with status {proc.popen.returncode}")
    if result.problems:
        stderr = "\n".join(proc.stderr_tail)
        result.stdout = text + (f"\n[stderr]\n{stderr}" if stderr else "")
    return result


def _parse(
    text: str,
    url: str,
    connections: int,
    duration_s: int,
    request_limit: int | None,
    wall: float,
    cpu: dict[str, float],
    expected_body: int,
) -> WrkResult:
    data: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("BENCHJSON "):
            data = json.loads(line[len("BENCHJSON ") :])
    problems: list[str] = []
    notes: list[str] = []
    if not data:
        problems.append("wrk printed no BENCHJSON summary line")
    requests = int(data.get("requests", 0))
    duration = data.get("duration_us", 0) / 1e6
    nbytes = int(data.get("bytes", 0))
    errors = {k: int(data.get(k, 0)) for k in ("connect", "read", "write", "timeout", "status")}
    per_response = nbytes / requests if requests else 0.0
    if data:
        if requests == 0:
            problems.append("no responses at all")
        socket_errors = {k: v for k, v in errors.items() if k != "status" and v}
        if socket_errors:
            problems.append(f"socket errors {socket_errors}")
        if errors["status"]:
            problems.append(f"{errors['status']} responses with status >= 400 (non-2xx/3xx)")
        # wrk counts every byte read, including the responses still in flight when it stops
        # (up to one per connection); it counts only completed responses as requests.
        low = requests * expected_body
        high = (requests + connections) * (expected_body + HEAD_SLACK_BYTES)
        if requests and not low <= nbytes <= high:
            problems.append(
                f"read {nbytes} bytes in {requests} responses ({per_response:.0f} per response) "
                f"for a {expected_body}-byte body"
            )
        if request_limit and requests < request_limit:
            notes.append(
                f"stopped by the {duration_s} s time bound after {requests} of "
                f"{request_limit} requests"
            )
    latency = {k: float(data.get(k, 0.0)) for k in ("p50", "p90", "p99", "p999", "min", "max")}
    latency["mean"] = float(data.get("mean", 0.0))
    return WrkResult(
        url=url,
        command="",
        connections=connections,
        duration_limit_s=duration_s,
        request_limit=request_limit,
        wall_s=round(wall, 3),
        duration_s=round(duration, 3),
        requests=requests,
        rps=requests / duration if duration > 0 else 0.0,
        bytes_read=nbytes,
        bytes_per_response=round(per_response, 1),
        errors=errors,
        latency_us=latency,
        cpu_pct={k: round(v, 1) for k, v in cpu.items()},
        problems=problems,
        notes=notes,
    )
