"""The memory limit read from cgroup files (app._memlimit), and settings fitted to it."""

from __future__ import annotations

from pathlib import Path

import pytest

from trioproxy.app import _memlimit
from trioproxy.app._memlimit import fitted, memory_limit_texts, sets_max_connections
from trioproxy.config._memfit import MiB, binding_limit
from trioproxy.config._reload import changed_keys
from trioproxy.config._settings import Settings


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_v2_reads_memory_max_up_to_the_root(tmp_path: Path) -> None:
    _write(tmp_path / "memory.max", "max\n")  # the root has none; a pod's limit, two levels up
    _write(tmp_path / "kubepods" / "pod1" / "memory.max", "268435456\n")
    _write(tmp_path / "kubepods" / "pod1" / "ctr" / "memory.max", "max\n")
    texts = memory_limit_texts("0::/kubepods/pod1/ctr\n", tmp_path)
    assert texts == ["max\n", "268435456\n", "max\n"]  # ctr, pod1, (no kubepods file), root
    assert binding_limit(texts) == 256 * MiB


def test_v1_without_a_cgroup_namespace_finds_the_container_file_at_the_mount_root(
    tmp_path: Path,
) -> None:
    # Inside a v1 container the host's path (/docker/ID) does not exist under the mount of
    # the container's own group; its file is at the mount's root.
    _write(tmp_path / "memory" / "memory.limit_in_bytes", "268435456\n")
    proc = "5:devices:/docker/abc\n4:memory:/docker/abc\n0::/docker/abc\n"
    assert binding_limit(memory_limit_texts(proc, tmp_path)) == 256 * MiB


def test_v1_unlimited_and_joined_controllers(tmp_path: Path) -> None:
    _write(tmp_path / "memory" / "memory.limit_in_bytes", "9223372036854771712\n")
    assert binding_limit(memory_limit_texts("4:memory,foo:/\n", tmp_path)) is None


def test_no_files_and_malformed_lines_mean_no_limit(tmp_path: Path) -> None:
    assert memory_limit_texts("0::/\n", tmp_path) == []
    _write(tmp_path / "memory.max", "1048576\n")
    assert memory_limit_texts("garbage\n4:cpu:/\n", tmp_path) == []


@pytest.mark.parametrize(
    ("raw", "sets"),
    [
        (None, False),
        (b"[limits]\nmax_connections = 500\n", True),
        (b"limits = { max_connections = 500 }\n", True),
        (b"[limits]\nmax_header_bytes = 8192\n", False),
        (b"max_connections = 5\n", False),  # not in [limits]
        (b"\xff\xfe", False),
    ],
)
def test_whether_the_file_sets_max_connections(raw: bytes | None, sets: bool) -> None:
    assert sets_max_connections(raw) is sets


def test_fitted_uses_the_limit_and_the_workers_share(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_memlimit, "memory_limit", lambda: 256 * MiB)
    monkeypatch.setenv("TRIOPROXY_WORKER_COUNT", "2")
    settings, line, warn = fitted(Settings(), None)
    assert settings.limits.max_connections == 215
    assert "per worker" in line
    assert not warn
    explicit, line, warn = fitted(Settings(), b"[limits]\nmax_connections = 10000\n")
    assert explicit.limits.max_connections == 10000
    assert warn


def test_a_reload_of_the_same_file_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reload fits the new settings as startup did, so the running (fitted) count is not
    reported as a restart-only change on every SIGHUP."""
    monkeypatch.setattr(_memlimit, "memory_limit", lambda: 256 * MiB)
    running = fitted(Settings(), None)[0]
    assert changed_keys(running, fitted(Settings(), None)[0]) == []
    assert changed_keys(running, Settings()) == ["limits.max_connections"]  # unfitted
