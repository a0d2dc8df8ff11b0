"""How a configuration problem shows a value: its TOML type, TOML syntax on one line, close names.

Shared by the settings checks (`_schema`) and the rules loader (`_ruleconfig` and its parts), so
both word their messages alike.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["close_matches", "describe", "quote", "quote_all", "toml_repr"]


def close_matches(word: str, candidates: list[str] | tuple[str, ...], n: int) -> list[str]:
    import difflib  # only to suggest a name for a mistake: not in every proxy's memory

    return difflib.get_close_matches(word, candidates, n=n)


_MAX_SHOWN = 60


def describe(value: Any) -> str:
    """Name a TOML value's type and show it, as the user wrote it (roughly)."""
    if value is None:  # JSON's null (TOML has none)
        return "null"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        return "an array of tables"
    return f"{toml_type(value)} {quote(value)}"


def toml_type(value: Any) -> str:
    for python_type, name in _TOML_TYPES:
        if isinstance(value, python_type):
            return name
    import datetime  # here: only tomllib makes such values, and it has imported datetime

    if isinstance(value, datetime.date | datetime.time):  # tomllib's remaining types
        return "date-time"
    # Not from TOML: JSON's null (POST /faults), a Python value (proxy.fault(key=...)).
    return "null" if value is None else f"a Python {type(value).__name__}"


_TOML_TYPES: tuple[tuple[type, str], ...] = (
    (bool, "boolean"),  # before int: bool is an int subclass
    (int, "integer"),
    (float, "float"),
    (str, "string"),
    (list, "array"),
)


def quote(value: Any) -> str:
    """Render a value in TOML syntax, shortened, escaped onto one line."""
    text = toml_repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def quote_all(values: tuple[Any, ...] | list[Any]) -> str:
    return ", ".join(toml_repr(value) for value in values)


def toml_repr(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.translate(_STRING_ESCAPES) + '"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_repr(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{...}"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return str(value)


# TOML basic-string escapes, so that a quoted value never breaks the one-line message.
_STRING_ESCAPES = {
    **{code: f"\\u{code:04x}" for code in [*range(0x20), 0x7F]},
    ord("\\"): "\\\\",
    ord('"'): '\\"',
    ord("\t"): "\\t",
    ord("\n"): "\\n",
    ord("\r"): "\\r",
}
