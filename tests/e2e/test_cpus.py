"""``--workers auto``: the CPU count from the affinity mask and the cgroup v2 quota."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import trio

from trioproxy.app._cpus import cpu_max_texts, parse_cpu_max, usable_cpus

from ..cli_support import command_process, run_cli, stderr_until_ready


@pytest.mark.parametrize(
    ("text", "cpus"),
    [
        ("max 100000\n", None),
        ("200000 100000\n", 2.0),
        ("150000 100000\n", 1.5),
        ("50000 100000", 0.5),
        ("garbage", None),
        ("0 100000", None),
    ],
)
def test_cpu_max_is_quota_over_period(text: str, cpus: float | None) -> None:
    assert parse_cpu_max(text) == cpus


@pytest.mark.parametrize(
    ("affinity", "quotas", "expected"),
    [
        (8, [], 8),  # no cgroup limit
        (8, ["max 100000"], 8),
        (8, ["150000 100000"], 2),  # 1.5 CPUs rounds up
        (8, ["50000 100000"], 1),  # half a CPU is still one worker
        (2, ["400000 100000"], 2),  # the affinity mask binds first
        (8, ["max 100000", "300000 100000", "500000 100000"], 3),  # the tightest ancestor
        (0, [], 1),  # never fewer than one
    ],
)
def test_usable_cpus_is_the_tightest_limit_rounded_up(
    affinity: int, quotas: list[str], expected: int
) -> None:
    assert usable_cpus(affinity, quotas) == expected


def test_cpu_max_files_are_read_from_the_group_up_to_the_root(tmp_path: Path) -> None:
    (tmp_path / "kubepods" / "pod1").mkdir(parents=True)
    (tmp_path / "kubepods" / "pod1" / "cpu.max").write_text("150000 100000\n")
    (tmp_path / "kubepods" / "cpu.max").write_text("max 100000\n")
    texts = cpu_max_texts("0::/kubepods/pod1\n", tmp_path)
    assert texts == ["150000 100000\n", "max 100000\n"]
    assert cpu_max_texts("4:memory:/x\n", tmp_path) == []  # cgroup v1 only: no quota known


async def _ready_line_on(cpus: set[int], origin: tuple[str, int], config_dir: Path) -> bytes:
    """Start ``trioproxy --workers auto`` pinned to ``cpus``; its stderr up to the ready
    line, after a clean SIGTERM stop."""
    pin = (
        f"import os, sys; os.sched_setaffinity(0, {cpus!r}); "
        "os.execv(sys.executable, [sys.executable, '-m', 'trioproxy', *sys.argv[1:]])"
    )
    command = [sys.executable, "-c", pin, "--listen", "127.0.0.1:0", "--workers", "auto"]
    command += ["--upstream", f"{origin[0]}:{origin[1]}", "--config-dir", str(config_dir)]
    async with command_process(command) as process:
        with trio.fail_after(15):
            seen = await stderr_until_ready(process)
            process.terminate()
            assert await process.wait() == 0
    return bytes(seen)


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="Linux only")
async def test_workers_auto_on_one_cpu_runs_no_supervisor(
    origin: tuple[str, int], tmp_path: Path
) -> None:
    seen = await _ready_line_on({min(os.sched_getaffinity(0))}, origin, tmp_path)
    assert b"workers)" not in seen and b"trioproxy[worker" not in seen


@pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs two CPUs",
)
async def test_workers_auto_on_two_cpus_runs_two_workers(
    origin: tuple[str, int], tmp_path: Path
) -> None:
    seen = await _ready_line_on(set(sorted(os.sched_getaffinity(0))[:2]), origin, tmp_path)
    assert b"(2 workers)" in seen


@pytest.mark.parametrize("value", ["0", "-3", "abc"])
async def test_bad_worker_counts_are_one_line_and_exit_2(value: str) -> None:
    result = await run_cli(["--listen", "127.0.0.1:0", "--workers", value])
    assert result.returncode == 2
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and "--workers" in lines[0] and repr(value) in lines[0], lines
