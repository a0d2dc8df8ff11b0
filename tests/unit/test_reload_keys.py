"""What a reload applies and what waits for a restart: one list, `RESTART_ONLY`, pinned."""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from trioproxy.config._reload import RESTART_ONLY, applicable, changed_keys, missing, summary
from trioproxy.config._settings import Admin, Diagnostics, Limits, Settings, Upstream


def _every_key() -> list[tuple[str, str]]:
    return [
        (section.name, key.name)
        for section in fields(Settings)
        if section.name != "rules"
        for key in fields(getattr(Settings(), section.name))
    ]


def _another(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return "json" if value != "json" else "text"
    return value


def test_the_restart_only_keys_are_these_and_exist() -> None:
    expected = {
        "admin.listen",
        "admin.journal_size",  # the journal is made once, with the server
        "admin.journal_body_bytes",  # with it
        "admin.faults",  # as the admin listener is
        "upstream.pool_size",  # the pool is sized once: a reload must not claim to apply it
        "limits.max_connections",
        "diagnostics.format",
    }
    assert expected == RESTART_ONLY
    every = {f"{section}.{key}" for section, key in _every_key()}
    assert not RESTART_ONLY - every


def test_a_reload_keeps_exactly_the_restart_only_keys() -> None:
    old = Settings()
    for section, key in _every_key():
        value = _another(getattr(getattr(old, section), key))
        if value == getattr(getattr(old, section), key):
            continue  # a tuple or a list: nothing simple to change it to
        new = replace(old, **{section: replace(getattr(old, section), **{key: value})})
        kept = getattr(getattr(applicable(old, new), section), key)
        dotted = f"{section}.{key}"
        assert changed_keys(old, new) == [dotted]
        assert kept == (getattr(getattr(old, section), key) if dotted in RESTART_ONLY else value)


def test_a_changed_pool_size_is_named_as_needing_a_restart() -> None:
    old = Settings(upstream=Upstream(pool_size=8), admin=Admin(), limits=Limits())
    new = Settings(upstream=Upstream(pool_size=9), diagnostics=Diagnostics(format="json"))
    assert applicable(old, new).upstream.pool_size == 8
    warn, line = summary("t.toml", changed_keys(old, new))
    assert warn
    assert line == (
        "reload t.toml: ok, no change; upstream.pool_size, diagnostics.format changed but "
        "need a restart: kept as they were"
    )


def test_a_missing_file_is_refused_unless_nothing_would_change() -> None:
    assert missing("t.toml", Settings()) is None  # the defaults run: nothing to lose
    running = Settings(upstream=Upstream(pool_size=8))
    assert missing("t.toml", running) == (
        "reload t.toml: rejected (the file is missing), still serving the old one"
    )


def test_the_configuration_reference_marks_exactly_the_restart_only_keys() -> None:
    reference = Path(__file__).parents[2] / "docs" / "reference" / "configuration.md"
    marked = {
        line.split("`")[1]
        for line in reference.read_text(encoding="utf-8").splitlines()
        if line.startswith("| `") and "needs a restart" in line
    }
    assert marked == set(RESTART_ONLY)
