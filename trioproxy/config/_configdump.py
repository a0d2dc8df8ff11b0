"""Render the effective configuration as TOML, defaults included (``trioproxy config``; pure).

Sections come from the `Settings` in force, so every key is shown with the value the proxy runs
with. ``[[rules]]`` are shown as the file wrote them (already checked by the loader), with the
defaults of the keys an action left out added: the compiled rules keep no source form worth
re-deriving.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any

from ..core._ratelimit import DEFAULT_MAX_CLIENTS
from ._settings import Settings

__all__ = ["render_toml"]

# What an action means by a key it leaves out (`_ruleactions`); test_configdump holds these to
# the loader's by loading the dump back. ``deny = true`` is the table with its defaults.
_ACTION_DEFAULTS: dict[str, dict[str, Any]] = {
    "redirect": {"status": 302},
    "respond": {"status": 200},
    "deny": {"status": 403},
    "rate_limit": {"max_clients": DEFAULT_MAX_CLIENTS},
}


def render_toml(settings: Settings, rules: Sequence[Mapping[str, Any]] = ()) -> str:
    lines: list[str] = []
    for section in fields(settings):
        if section.name == "rules":
            continue
        lines.append(f"[{section.name}]")
        values = getattr(settings, section.name)
        for key in fields(values):
            lines.append(f"{key.name} = {_value(getattr(values, key.name))}")
        lines.append("")
    for rule in rules:
        lines.extend(_table(["rules"], _with_defaults(rule), array=True))
    return "\n".join(lines).rstrip("\n") + "\n"


def _with_defaults(rule: Mapping[str, Any]) -> dict[str, Any]:
    shown = dict(rule)
    for action, defaults in _ACTION_DEFAULTS.items():
        written = {} if shown.get(action) is True and action == "deny" else shown.get(action)
        if isinstance(written, Mapping):
            shown[action] = {**written, **{k: v for k, v in defaults.items() if k not in written}}
    return shown


def _table(path: list[str], table: Mapping[str, Any], *, array: bool = False) -> list[str]:
    name = ".".join(_key(part) for part in path)
    lines = [f"[[{name}]]" if array else f"[{name}]"]
    nested: list[tuple[str, Any]] = []
    for key, value in table.items():
        if isinstance(value, Mapping) or _is_table_array(value):
            nested.append((key, value))
        else:
            lines.append(f"{_key(key)} = {_value(value)}")
    lines.append("")
    for key, value in nested:
        if isinstance(value, Mapping):
            lines.extend(_table([*path, key], value))
        else:
            for item in value:
                lines.extend(_table([*path, key], item, array=True))
    return lines


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)


def _key(name: str) -> str:
    bare = name and all(c.isascii() and (c.isalnum() or c in "_-") for c in name)
    return name if bare else _string(name)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def _string(text: str) -> str:
    # A JSON string is a TOML basic string (both escape with \b \t \n \f \r \" \\ \uXXXX),
    # but TOML also forbids a raw DEL, which JSON leaves alone.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")
