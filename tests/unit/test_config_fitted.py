"""`trioproxy config` prints what a proxy started with the same environment would run with:
`limits.max_connections` fitted to the memory limit, and a comment saying so."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from trioproxy.app import _cli, _memlimit

MiB = 1024 * 1024


def _config(capsys: pytest.CaptureFixture[str], directory: Path) -> tuple[str, int]:
    assert _cli.main(["config", str(directory)]) == 0
    out = capsys.readouterr().out
    return out, tomllib.loads(out)["limits"]["max_connections"]


@pytest.fixture
def limit_256_mib(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_memlimit, "memory_limit", lambda: 256 * MiB)
    monkeypatch.delenv("TRIOPROXY_WORKERS", raising=False)


@pytest.mark.usefixtures("limit_256_mib")
def test_max_connections_is_fitted_as_the_proxy_fits_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, max_connections = _config(capsys, tmp_path)
    assert max_connections == 565  # docs/reference/configuration.md: 565 at 256 MiB
    assert out.startswith("# limits.max_connections 565, fitted to the memory limit of 256 MiB")


@pytest.mark.usefixtures("limit_256_mib")
def test_each_worker_gets_its_share(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRIOPROXY_WORKERS", "2")
    out, max_connections = _config(capsys, tmp_path)
    assert max_connections == 215
    assert "215 per worker" in out.splitlines()[0]


@pytest.mark.usefixtures("limit_256_mib")
def test_a_value_the_file_sets_is_kept_and_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "trioproxy.toml").write_text("[limits]\nmax_connections = 5000\n")
    out, max_connections = _config(capsys, tmp_path)
    assert max_connections == 5000
    assert out.startswith("# limits.max_connections = 5000 does not fit")


def test_without_a_memory_limit_nothing_changes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_memlimit, "memory_limit", lambda: None)
    out, max_connections = _config(capsys, tmp_path)
    assert max_connections == 10000
    assert out.startswith("[")
