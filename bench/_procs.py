"""Start, pin and always stop the benchmark's processes; read CPU time and RSS from /proc.

Every process is started in its own session (so its own process group) and registered; the
registry stops each group with SIGTERM, then SIGKILL, from ``stop_all``, which runs from the
caller's ``finally`` and again from ``atexit``. Nothing is ever killed by name.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


@dataclass(eq=False)
class Managed:
    """One started process (the leader of its own process group)."""

    name: str
    argv: list[str]
    popen: subprocess.Popen[bytes]
    stderr_tail: deque[str] = field(default_factory=lambda: deque(maxlen=200))
    # For wait_for_line; bounded, so lines nobody waits for cannot pile up.
    _lines: queue.Queue[str | None] = field(default_factory=lambda: queue.Queue(maxsize=1000))

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait_for_line(self, pattern: re.Pattern[str], timeout_s: float) -> re.Match[str] | None:
        """The first stderr line matching ``pattern``; None on timeout, exit or end of stderr."""
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=min(left, 0.2))
            except queue.Empty:
                if not self.alive() and self._lines.empty():
                    return None
                continue
            if line is None:  # stderr closed
                return None
            if m := pattern.search(line):
                return m
        return None

    def describe_exit(self) -> str:
        code = self.popen.poll()
        tail = "\n".join(list(self.stderr_tail)[-15:])
        state = "still running" if code is None else f"exit status {code}"
        return f"{self.name} ({state}); last stderr lines:\n{tail or '(none)'}"


def _pump_stderr(stream: IO[bytes], proc: Managed) -> None:
    # Drains the child's stderr for its whole life so a chatty child can never block on a
    # full pipe; keeps the last lines for error reports.
    try:
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            proc.stderr_tail.append(line)
            with contextlib.suppress(queue.Full):
                proc._lines.put_nowait(line)
    except (OSError, ValueError):
        pass
    finally:
        with contextlib.suppress(queue.Full):
            proc._lines.put_nowait(None)


class ProcessRegistry:
    """Owns every process the benchmark starts, and stops all of them whatever happens."""

    def __init__(self) -> None:
        self._procs: list[Managed] = []
        self._lock = threading.Lock()
        atexit.register(self.stop_all)

    def spawn(
        self,
        name: str,
        argv: Sequence[str],
        *,
        cpus: str | None,
        env: Mapping[str, str] | None = None,
        stdout: int | IO[bytes] = subprocess.DEVNULL,
        cwd: Path | None = None,
    ) -> Managed:
        """Start ``argv`` (pinned with ``taskset -c cpus`` unless ``cpus`` is None).

        taskset execs the program, so the pid is the program's own pid.
        """
        full = (["taskset", "-c", cpus] if cpus else []) + list(argv)
        popen = subprocess.Popen(
            full,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.PIPE,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
        proc = Managed(name=name, argv=full, popen=popen)
        assert popen.stderr is not None
        threading.Thread(
            target=_pump_stderr, args=(popen.stderr, proc), name=f"stderr-{name}", daemon=True
        ).start()
        with self._lock:
            self._procs.append(proc)
        return proc

    def stop(self, proc: Managed, grace_s: float = 5.0) -> None:
        """SIGTERM the process group, wait up to ``grace_s``, then SIGKILL it."""
        if proc.alive():
            _signal_group(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=grace_s)
        # Whatever the leader did, no member of its group may outlive it.
        _signal_group(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(timeout=grace_s)
        with self._lock:
            if proc in self._procs:
                self._procs.remove(proc)

    def stop_all(self) -> None:
        with self._lock:
            procs = list(reversed(self._procs))
        for proc in procs:
            self.stop(proc)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for programs that need a number)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --- /proc readers -------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the parenthesised command name, which may itself hold spaces or ')'.
    return text[text.rindex(")") + 2 :].split()


def cpu_user_sys_ticks(pid: int) -> tuple[int, int] | None:
    """(utime, stime) of one process, all its threads (the exited ones too), in clock ticks."""
    f = _stat_fields(pid)
    if f is None:
        return None
    return int(f[11]), int(f[12])  # fields 14 and 15 of proc(5), counted from 3 here


def cpu_ticks(pid: int) -> int | None:
    """utime + stime of one process, in clock ticks."""
    ticks = cpu_user_sys_ticks(pid)
    return None if ticks is None else ticks[0] + ticks[1]


def process_tree(root: int) -> list[int]:
    """``root`` and all its living descendants (trioproxy --workers forks children)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        f = _stat_fields(int(entry.name))
        if f is not None:
            children.setdefault(int(f[1]), []).append(int(entry.name))
    out: list[int] = []
    todo = [root]
    while todo and len(out) < 10_000:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (from /proc/PID/task/*/children), in pid order."""
    out: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return out
    for task in tasks:
        with contextlib.suppress(OSError, ValueError):
            out += [int(c) for c in (task / "children").read_text().split()]
    return sorted(set(out))


CpuSnapshot = Mapping[int, tuple[int, int]]  # pid -> (utime, stime) ticks


def tree_cpu_snapshot(root: int) -> dict[int, tuple[int, int]]:
    snap: dict[int, tuple[int, int]] = {}
    for pid in process_tree(root):
        ticks = cpu_user_sys_ticks(pid)
        if ticks is not None:
            snap[pid] = ticks
    return snap


def cpu_used_s(before: CpuSnapshot, after: CpuSnapshot) -> tuple[float, float]:
    """(user, sys) seconds a process tree used between two snapshots.

    A process born in between counts from zero; one that died in between is lost (its time
    goes to its parent only once reaped, as Linux accounts it).
    """
    user = sys = 0
    for pid, (u, s) in after.items():
        u0, s0 = before.get(pid, (0, 0))
        user += max(0, u - u0)
        sys += max(0, s - s0)
    return user / CLK_TCK, sys / CLK_TCK


def cpu_percent(before: CpuSnapshot, after: CpuSnapshot, wall_s: float) -> float:
    """CPU used by a process tree between two snapshots, in % of one core."""
    return 100.0 * sum(cpu_used_s(before, after)) / wall_s if wall_s > 0 else 0.0


def rss_kib(pid: int) -> int | None:
    """VmRSS of one process from /proc/PID/status, in KiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def tree_rss_kib(root: int) -> int | None:
    """Sum of VmRSS over ``root`` and its descendants (shared pages count once per process)."""
    values = [rss_kib(pid) for pid in process_tree(root)]
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def fd_count(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


@dataclass(frozen=True)
class CpuTimes:
    """Whole-machine jiffies from the first line of /proc/stat."""

    busy: int
    idle: int
    steal: int
    task: int  # user + nice + system: time charged to processes (no irq, softirq, steal)

    @staticmethod
    def read() -> CpuTimes:
        parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        # user nice system idle iowait irq softirq steal [guest guest_nice: inside user/nice]
        idle = parts[3] + parts[4]
        steal = parts[7] if len(parts) > 7 else 0
        busy = sum(parts[:8]) - idle - steal
        return CpuTimes(busy=busy, idle=idle, steal=steal, task=parts[0] + parts[1] + parts[2])

    def since(self, earlier: CpuTimes) -> tuple[float, float]:
        """(busy %, steal %) of all CPUs between ``earlier`` and this reading."""
        busy = self.busy - earlier.busy
        total = busy + (self.idle - earlier.idle) + (self.steal - earlier.steal)
        if total <= 0:
            return 0.0, 0.0
        return 100.0 * busy / total, 100.0 * (self.steal - earlier.steal) / total


def machine_task_percent(before: CpuTimes, after: CpuTimes, wall_s: float) -> float:
    """CPU charged to all processes of the machine between two readings, in % of one core."""
    return 100.0 * (after.task - before.task) / CLK_TCK / wall_s if wall_s > 0 else 0.0


def load_average_1min() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def install_signal_exit() -> None:
    """Turn SIGINT, SIGTERM and SIGHUP into SystemExit, so ``finally`` blocks and atexit stop
    every child, even when the shell started us with SIGINT ignored (``cmd &``)."""

    def _exit(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit)
