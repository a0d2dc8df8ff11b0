"""Load ``trioproxy.toml`` into `Settings`, reporting every problem at once (no I/O but the read).

The schema is `_settings` itself: sections are the fields of `Settings`, keys the fields of each
section dataclass, and the allowed values come from each field's type and metadata (`_schema`
derives it and checks each section; `_configfile` reads the file). The proxy at
startup and ``trioproxy validate`` (the platform's pre-receive hook) both call `load_settings`, so
a file the validator accepts is a file the proxy runs with.

This module is on the validator's path, which must be fast: it imports only the standard library
modules it needs, never trio or h11.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._configfile import CONFIG_FILENAME, _parse, read_config
from ._describe import describe
from ._hookfiles import unbundle
from ._lines import _LineIndex
from ._problems import ConfigError, Problem
from ._schema import RULES, _check_section, _schema, _unknown_message
from ._settings import Settings

__all__ = [
    "CONFIG_FILENAME",
    "ConfigError",
    "Problem",
    "load_config",
    "load_settings",
    "read_config",
    "settings_from_bytes",
    "settings_from_mapping",
]


def load_settings(config_dir: str | Path) -> Settings:
    """Read ``CONFIG_FILENAME`` from ``config_dir``; no directory or no file means the defaults.

    The platform mounts the configuration at ``/opt/proxy_config`` only when the application
    repository has a directory for this proxy, so a plain run sees neither and gets defaults.
    """
    file, raw = read_config(config_dir)
    return Settings() if raw is None else settings_from_bytes(raw, file=file)


def load_config(config_dir: str | Path) -> tuple[Settings, Mapping[str, Any]]:
    """`load_settings`, and the file's parsed TOML as well ({} when there is none)."""
    file, raw = read_config(config_dir)
    if raw is None:
        return Settings(), {}
    toml, hook_files = unbundle(raw)
    data, text = _parse(toml, file=file)
    settings = settings_from_mapping(data, file=file, source_text=text, hook_files=hook_files)
    return settings, data


def settings_from_bytes(raw: bytes, *, file: str) -> Settings:
    """Decode, parse and check a whole file's content (with the hook files read beside it:
    `_hookfiles.bundle`); ``file`` names it in problems."""
    toml, hook_files = unbundle(raw)
    data, text = _parse(toml, file=file)
    return settings_from_mapping(data, file=file, source_text=text, hook_files=hook_files)


def settings_from_mapping(
    data: Mapping[str, Any],
    *,
    file: str,
    source_text: str | None,
    hook_files: Mapping[str, bytes | str] | None = None,
) -> Settings:
    """Check parsed TOML against the schema; return the settings or raise every problem."""
    lines = _LineIndex(source_text or "")
    problems: list[Problem] = []
    in_hook_files: list[Problem] = []  # after the TOML's, in the order found

    def problem(key_path: str, message: str) -> None:
        problems.append(Problem(file, lines.find(key_path), key_path, message))

    sections: dict[str, Any] = {}
    schema = _schema()
    # Walk the file's keys (tomllib keeps their order), not the schema's.
    for name, table in data.items():
        if name == RULES:
            # Imported here: a file without [[rules]] never loads the rules loader or model.
            from ._ruleconfig import parse_rules

            sections[name] = parse_rules(
                table,
                problem,
                lines.find,
                hook_files=hook_files,
                toml_file=file,
                file_problem=in_hook_files.append,
            )
        elif name not in schema:
            problem(name, _unknown_message(name, is_section=_is_table(table)))
        elif not isinstance(table, dict):
            problem(name, f"expected a table ([{name}] section), found {describe(table)}")
        else:
            values = _check_section(name, table, problem)
            sections[name] = schema[name].cls(**values)
    if problems or in_hook_files:
        # File order, even where a dotted key reopens a table further down.
        problems.sort(key=lambda p: (p.line is None, p.line or 0))
        raise ConfigError(problems + in_hook_files)
    return Settings(**sections)


def _is_table(value: Any) -> bool:
    """A table, or an array of tables ([[name]]): what a misspelt section name holds."""
    if isinstance(value, list):
        return bool(value) and all(isinstance(item, dict) for item in value)
    return isinstance(value, dict)
