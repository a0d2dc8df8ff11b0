"""Check one settings section against the schema derived from `_settings`, wording each problem."""

from __future__ import annotations

import ipaddress
import math
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from functools import cache
from typing import Any

from ._describe import close_matches, describe, quote, quote_all
from ._settings import Settings

__all__ = ["KNOWN_METADATA", "RULES"]

# Every metadata key the loader understands. `tests/unit/test_config.py` checks that `_settings`
# uses no other, so a typo there ("mni") cannot silently switch a check off.
KNOWN_METADATA = frozenset(
    {
        "doc",
        "min",
        "max",
        "choices",
        "pattern",
        "expect",
        "subset_of",
        "loopback_address",
        "networks",
    }
)


# --- The schema, derived from `_settings` ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Key:
    path: str  # "section.key"
    type: Any  # float, int, bool, str or tuple[str, ...]
    meta: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class _Section:
    cls: type[Any]
    keys: dict[str, _Key]


# The one array of tables, with its own loader (`_ruleconfig`): not a section of keys.
RULES = "rules"


@cache
def _schema() -> dict[str, _Section]:
    # `_settings` uses `from __future__ import annotations`, so field types are strings there;
    # get_type_hints resolves them to the real types.
    schema: dict[str, _Section] = {}
    for section_field in fields(Settings):
        if section_field.name == RULES:
            continue
        cls = typing.get_type_hints(Settings)[section_field.name]
        hints = typing.get_type_hints(cls)
        keys = {
            f.name: _Key(f"{section_field.name}.{f.name}", hints[f.name], f.metadata)
            for f in fields(cls)
        }
        schema[section_field.name] = _Section(cls, keys)
    return schema


@cache
def _paths_by_key_name() -> dict[str, list[str]]:
    paths: dict[str, list[str]] = {}
    for section in _schema().values():
        for name, key in section.keys.items():
            paths.setdefault(name, []).append(key.path)
    return paths


# --- Checking one section ---------------------------------------------------------------------


class _Invalid(Exception):
    """A value is wrong; each argument says what was expected and what was found (several:
    one problem each, as for every bad entry of a list)."""


def _check_section(
    name: str, table: Mapping[str, Any], problem: Callable[[str, str], None]
) -> dict[str, Any]:
    keys = _schema()[name].keys
    values: dict[str, Any] = {}
    for key_name, value in table.items():
        key_path = f"{name}.{key_name}"
        key = keys.get(key_name)
        if key is None:
            problem(key_path, _unknown_message(key_path, is_section=False))
            continue
        try:
            values[key_name] = _check_value(key, value)
        except _Invalid as exc:
            for message in exc.args:
                problem(key_path, message)
    return values


def _check_value(key: _Key, value: Any) -> Any:
    # The checks see the value as written, so that messages quote what the user wrote (`0`,
    # not `0.0`); only a valid value is converted to the field's type.
    _type_check(key)(key, value)
    for check in _META_CHECKS:
        check(key, value)
    if key.type is float:
        return float(value)  # TOML writes five seconds as `5` as readily as `5.0`
    if typing.get_origin(key.type) is tuple:
        return tuple(value)  # frozen settings hold tuples; TOML has arrays
    return value


def _type_check(key: _Key) -> Callable[[_Key, Any], None]:
    if typing.get_origin(key.type) is tuple:
        return _check_string_list
    return _TYPE_CHECKS[key.type]


def _check_float(key: _Key, value: Any) -> None:
    # bool is an int in Python, but `true` is not a number of seconds.
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise _Invalid(f"expected {_expected_number(key, 'a number')}, found {describe(value)}")


def _check_int(key: _Key, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(f"expected {_expected_number(key, 'an integer')}, found {describe(value)}")


def _check_bool(key: _Key, value: Any) -> None:
    if not isinstance(value, bool):
        raise _Invalid(f"expected true or false, found {describe(value)}")


def _check_str(key: _Key, value: Any) -> None:
    if not isinstance(value, str):
        raise _Invalid(f"expected {_expected_string(key)}, found {describe(value)}")


def _check_string_list(key: _Key, value: Any) -> None:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _Invalid(f"expected an array of strings, found {describe(value)}")


_TYPE_CHECKS: dict[Any, Callable[[_Key, Any], None]] = {
    float: _check_float,
    int: _check_int,
    bool: _check_bool,
    str: _check_str,
}


def _check_range(key: _Key, value: Any) -> None:
    low, high = key.meta.get("min"), key.meta.get("max")
    if (low is not None and value < low) or (high is not None and value > high):
        kind = "a number" if key.type is float else "an integer"
        raise _Invalid(f"expected {_expected_number(key, kind)}, found {quote(value)}")


def _check_choices(key: _Key, value: Any) -> None:
    choices = key.meta.get("choices")
    if choices is not None and value not in choices:
        raise _Invalid(f"expected one of {quote_all(choices)}, found {quote(value)}")


def _check_pattern(key: _Key, value: Any) -> None:
    pattern = key.meta.get("pattern")
    if pattern is not None and not re.fullmatch(pattern, value):
        raise _Invalid(f"expected {_expected_string(key)}, found {quote(value)}")


def _check_subset(key: _Key, value: Any) -> None:
    allowed = key.meta.get("subset_of")
    if allowed is None:
        return
    if not value:
        # A line with no fields tells nobody anything; leave the key out to log every field.
        raise _Invalid(f"expected at least one of {quote_all(allowed)}, found []")
    unknown = [item for item in value if item not in allowed]
    if unknown:
        described = ", ".join(_unknown_item(item, allowed) for item in unknown)
        noun = "entry" if len(unknown) == 1 else "entries"
        raise _Invalid(f"unknown {noun} {described}; allowed: {quote_all(allowed)}")
    repeated = sorted({item for item in value if value.count(item) > 1}, key=value.index)
    if repeated:
        raise _Invalid(f"each entry may appear once, found {quote_all(repeated)} repeated")


def _unknown_item(item: str, allowed: tuple[str, ...]) -> str:
    close = close_matches(item, allowed, n=1)
    return f"{quote(item)} (did you mean {quote(close[0])}?)" if close else quote(item)


def _check_loopback_address(key: _Key, value: Any) -> None:
    if key.meta.get("loopback_address") and value != "":
        message = _loopback_address_problem(value)
        if message is not None:
            raise _Invalid(f"{message}, found {quote(value)}")


def _check_networks(key: _Key, value: Any) -> None:
    if not key.meta.get("networks"):
        return
    from ._rulevalues import network_problem  # the rules' allow lists parse networks alike

    messages = [message for text in value if (message := network_problem(text)) is not None]
    if messages:
        raise _Invalid(*messages)


_META_CHECKS: tuple[Callable[[_Key, Any], None], ...] = (
    _check_networks,
    _check_range,
    _check_choices,
    _check_pattern,
    _check_subset,
    _check_loopback_address,
)

_LOOPBACK_EXPECTED = 'expected "" (off) or HOST:PORT with HOST 127.x.y.z, [::1] or localhost'
# The platform routes only port 80 to the container, and that port is the proxy's own public
# listener; anything else must stay on loopback.
_PUBLIC_REFUSED = "only a loopback address is allowed (the platform exposes only port 80)"


def _loopback_address_problem(value: str) -> str | None:
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        return _LOOPBACK_EXPECTED
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        return f"{_LOOPBACK_EXPECTED} (an IPv6 address needs brackets: [::1]:PORT)"
    if not (port.isascii() and port.isdigit() and len(port) <= 5 and 1 <= int(port) <= 65535):
        return f"{_LOOPBACK_EXPECTED}, with PORT from 1 to 65535"
    if int(port) == 80:
        return "port 80 is the proxy's public listener; choose another port"
    if host.lower() == "localhost":
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return f"{_LOOPBACK_EXPECTED} (host names other than localhost are not allowed)"
    return None if address.is_loopback else _PUBLIC_REFUSED


# --- Words for messages -------------------------------------------------------------------------


def _unknown_message(path: str, *, is_section: bool) -> str:
    what = "section" if is_section else "key"
    suggestion = _suggest(path, is_section=is_section)
    if suggestion is not None:
        return f"unknown {what}; did you mean '{suggestion}'?"
    section, _, _ = path.rpartition(".")
    if section in _schema():
        return f"unknown key; [{section}] allows: {', '.join(_schema()[section].keys)}"
    return f"unknown {what}; allowed sections: {', '.join(_section_names())}"


def _section_names() -> list[str]:
    return [*_schema(), RULES]


def _suggest(path: str, *, is_section: bool) -> str | None:
    if is_section:
        close = close_matches(path, _section_names(), n=1)
        return close[0] if close else None
    # Compare key names without their sections: a shared "timeouts." prefix would make any
    # two keys look alike. A known key in the wrong place ("pool_size" at the top, or under
    # [timeouts]) is then an exact match, and wins over a spelling guess.
    section, _, name = path.rpartition(".")
    close = close_matches(name, list(_paths_by_key_name()), n=1)
    if not close:
        return None
    paths = _paths_by_key_name()[close[0]]
    return next((p for p in paths if p.startswith(f"{section}.")), paths[0])


def _expected_number(key: _Key, kind: str) -> str:
    low, high = key.meta.get("min"), key.meta.get("max")
    unit = _unit(key.path)
    if low is not None and high is not None:
        return f"{kind} from {_number(low)} to {_number(high)}{unit}"
    if low is not None:
        return f"{kind} of at least {_number(low)}{unit}"
    if high is not None:
        return f"{kind} of at most {_number(high)}{unit}"
    return kind


def _unit(path: str) -> str:
    # The unit is in the key's name (house style), so the message can say it.
    if path.endswith("_s"):
        return " (seconds)"
    if path.endswith("_bytes"):
        return " (bytes)"
    return ""


def _expected_string(key: _Key) -> str:
    if "expect" in key.meta:
        return str(key.meta["expect"])
    if "pattern" in key.meta:
        return f"a string matching {key.meta['pattern']}"
    return "a string"


def _number(value: float) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
