"""``--workers auto`` on cgroup v1: ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` bind as
``cpu.max`` does (pure, over a fake cgroup tree)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from trioproxy.app._cpus import cfs_quota_texts, usable_cpus


def _group(directory: Path, quota: int, period: int = 100_000) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (directory / "cpu.cfs_period_us").write_text(f"{period}\n")


V1_CGROUP = "12:memory:/kubepods/pod1/c1\n4:cpu,cpuacct:/kubepods/pod1/c1\n1:name=systemd:/\n"


def test_quotas_are_read_from_the_group_up_to_the_mount(tmp_path: Path) -> None:
    mount = tmp_path / "cpu,cpuacct"
    _group(mount, -1)
    _group(mount / "kubepods", -1)
    _group(mount / "kubepods" / "pod1", 300_000)
    _group(mount / "kubepods" / "pod1" / "c1", 150_000)
    texts = cfs_quota_texts(V1_CGROUP, tmp_path)
    assert texts == ["150000 100000", "300000 100000", "max 100000", "max 100000"]
    assert usable_cpus(8, texts) == 2  # 1.5 CPUs, rounded up


def test_in_a_container_the_mount_is_the_containers_own_group(tmp_path: Path) -> None:
    # docker on cgroup v1: /proc/self/cgroup names the host's path, /sys/fs/cgroup/cpu is
    # the container's group itself (`docker run --cpus 1`).
    _group(tmp_path / "cpu", 100_000)
    texts = cfs_quota_texts("3:cpu:/docker/0123abcd\n", tmp_path)
    assert texts == ["100000 100000"]
    assert usable_cpus(2, texts) == 1


@pytest.mark.parametrize(
    "proc_cgroup",
    ["0::/kubepods/pod1\n", "4:memory:/x\n", ""],
    ids=["cgroup-v2-only", "no-cpu-controller", "nothing"],
)
def test_no_v1_cpu_controller_no_quota(tmp_path: Path, proc_cgroup: str) -> None:
    _group(tmp_path / "cpu", 100_000)
    assert cfs_quota_texts(proc_cgroup, tmp_path) == []


def test_no_limit_on_v1_leaves_the_affinity(tmp_path: Path) -> None:
    _group(tmp_path / "cpu,cpuacct", -1)
    texts = cfs_quota_texts("2:cpu,cpuacct:/\n", tmp_path)
    assert texts == ["max 100000"]
    assert usable_cpus(4, texts) == 4


def test_a_missing_mount_is_no_quota(tmp_path: Path) -> None:
    assert cfs_quota_texts(V1_CGROUP, tmp_path) == []


def test_auto_workers_applies_the_v1_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    from trioproxy.app import _cpus

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})  # _cpus asks os
    monkeypatch.setattr(_cpus, "cpu_max_texts", lambda proc_cgroup: [])
    monkeypatch.setattr(_cpus, "cfs_quota_texts", lambda proc_cgroup: ["100000 100000"])
    assert _cpus.auto_workers() == 1
