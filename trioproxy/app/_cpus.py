"""``--workers auto``: how many CPUs this process may use (affinity and the cgroup quota).

`usable_cpus` decides over plain data; `cpu_max_texts`, `cfs_quota_texts` and `auto_workers`
read what it needs from /proc and /sys. A container's CPU limit (Kubernetes
``resources.limits.cpu``, ``docker run --cpus``) is the cgroup v2 ``cpu.max`` quota, "QUOTA
PERIOD" or "max PERIOD", or on cgroup v1 the pair ``cpu.cfs_quota_us`` (-1: none) and
``cpu.cfs_period_us``, read here in ``cpu.max``'s form; the limit that binds is the smallest over
the process's cgroup and its ancestors. A fractional quota (1.5 CPUs) is rounded up: the half
CPU is still worth a worker. This module never imports trio.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["auto_workers", "cfs_quota_texts", "cpu_max_texts", "parse_cpu_max", "usable_cpus"]

_CGROUP_ROOT = Path("/sys/fs/cgroup")


def parse_cpu_max(text: str) -> float | None:
    """CPUs allowed by one ``cpu.max`` file's content; None for no limit (or unreadable)."""
    parts = text.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    try:
        quota, period = int(parts[0]), int(parts[1])
    except ValueError:
        return None
    if quota <= 0 or period <= 0:
        return None
    return quota / period


def usable_cpus(affinity: int, cpu_max: Iterable[str]) -> int:
    """The CPUs this process may use: its affinity mask's size, capped by every ``cpu.max``
    quota on its way to the cgroup root (each rounded up), and at least 1."""
    count = affinity
    for text in cpu_max:
        quota = parse_cpu_max(text)
        if quota is not None:
            count = min(count, math.ceil(quota))
    return max(1, count)


def cpu_max_texts(proc_cgroup: str, root: Path = _CGROUP_ROOT) -> list[str]:
    """The ``cpu.max`` contents of the cgroup v2 group named in ``proc_cgroup`` (the text of
    /proc/self/cgroup) and of its ancestors; none on cgroup v1 or without the files."""
    relative = ""
    for line in proc_cgroup.splitlines():
        if line.startswith("0::"):
            relative = line[3:].strip().strip("/")
    texts = []
    parts = relative.split("/") if relative else []
    for depth in range(len(parts), -1, -1):
        try:
            texts.append((root.joinpath(*parts[:depth]) / "cpu.max").read_text())
        except OSError:
            continue
    return texts


def cfs_quota_texts(proc_cgroup: str, root: Path = _CGROUP_ROOT) -> list[str]:
    """The cgroup v1 CPU quotas of the group named in ``proc_cgroup`` for the ``cpu``
    controller and of its ancestors, each as ``cpu.max`` would say it ("QUOTA PERIOD", "max
    PERIOD"); none on cgroup v2 or without the files.

    The group's directory is looked for under the controller's mount (``cpu,cpuacct`` or
    ``cpu``) and walked up to it: in a container the mount is the container's own group, so
    the host path of /proc/self/cgroup is not there and the walk reaches the mount itself."""
    for line in proc_cgroup.splitlines():
        controllers, _, path = line.partition(":")[2].partition(":")
        if "cpu" not in controllers.split(","):
            continue
        mounts = [root / controllers, root / "cpu"]
        mount = next((m for m in mounts if (m / "cpu.cfs_period_us").exists()), None)
        if mount is None:
            return []
        parts = [part for part in path.strip().split("/") if part]
        return [
            text
            for depth in range(len(parts), -1, -1)
            if (text := _cfs_quota_text(mount.joinpath(*parts[:depth])))
        ]
    return []


def _cfs_quota_text(group: Path) -> str:
    try:
        quota = (group / "cpu.cfs_quota_us").read_text().strip()
        period = (group / "cpu.cfs_period_us").read_text().strip()
    except OSError:
        return ""
    return f"{'max' if quota.startswith('-') else quota} {period}"


def auto_workers() -> int:
    """What ``--workers auto`` means on this machine, now."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        affinity = os.cpu_count() or 1
    try:
        proc_cgroup = Path("/proc/self/cgroup").read_text()
    except OSError:
        proc_cgroup = ""
    quotas = cpu_max_texts(proc_cgroup) + cfs_quota_texts(proc_cgroup)
    return usable_cpus(affinity, quotas)
