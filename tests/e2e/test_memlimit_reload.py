"""A reload under a memory limit: the running max_connections was fitted to it at startup,
and a reload fits the new settings the same way, so an unchanged file is no change (not a
restart-only key "changed but kept" on every SIGHUP)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from trioproxy.app import _memlimit
from trioproxy.app._embed import running
from trioproxy.app._memlimit import fitted
from trioproxy.app._run import _Reloader
from trioproxy.config._memfit import MiB
from trioproxy.config._settings import Settings


@pytest.fixture
def lines() -> Iterator[list[str]]:
    """The trioproxy logger's lines, whatever its handlers (configure_diagnostics replaces
    them and stops propagation when another test ran the command in this process)."""
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("trioproxy")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield seen
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def test_reloading_an_unchanged_file_under_a_memory_limit_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lines: list[str]
) -> None:
    monkeypatch.setattr(_memlimit, "memory_limit", lambda: 256 * MiB)
    monkeypatch.delenv("TRIOPROXY_WORKER_COUNT", raising=False)
    (tmp_path / "trioproxy.toml").write_text("[timeouts]\nclient_idle_s = 70\n")
    started = fitted(Settings(), None)[0]
    async with running(("127.0.0.1", 9), started) as proxy:
        reloader = _Reloader(proxy.server, lambda record: None)
        await reloader.from_disk(str(tmp_path))
        assert proxy.server.settings.limits.max_connections == 565
        assert proxy.server.settings.timeouts.client_idle_s == 70
    reload_lines = [line for line in lines if line.startswith("reload ")]
    assert reload_lines == [
        f"reload {tmp_path / 'trioproxy.toml'}: ok, changed timeouts.client_idle_s"
    ]
