"""Load ``trioproxy.toml`` into `Settings`, reporting every problem at once (no I/O but the read).

The schema is `_settings` itself: sections are the fields of `Settings`, keys the fields of each
section dataclass, and the allowed values come from each field's type and metadata. The proxy at
startup and ``trioproxy validate`` (the platform's pre-receive hook) both call `load_settings`, so
a file the validator accepts is a file the proxy runs with.

This module is on the validator's path, which must be fast: it imports only the standard library
modules it needs, never trio or h11.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import stat
import tomllib
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path
from typing import Any

from ._describe import close_matches, describe, quote, quote_all
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

CONFIG_FILENAME = "trioproxy.toml"

# A real configuration is a few hundred bytes; anything past this is a mistake (a log file or a
# build artefact committed under the name), and reading it would make validation slow.
MAX_FILE_BYTES = 1 << 20

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


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the configuration, rendered as one line by `str`."""

    file: str
    line: int | None  # 1-based; None when the file has no such line (or we could not find it)
    key_path: str  # "timeouts.upstream_connect_s"; "" for problems with the file as a whole
    message: str

    def __str__(self) -> str:
        parts = [self.file if self.line is None else f"{self.file}:{self.line}"]
        if self.key_path:
            parts.append(self.key_path)
        parts.append(self.message)
        # One problem is one line, whatever a file name or a quoted value contains.
        return ": ".join(parts).replace("\r", "\\r").replace("\n", "\\n")


class ConfigError(Exception):
    """The configuration is unusable; ``problems`` lists everything found, in file order."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(problem) for problem in problems))
        self.problems = problems


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
    data, text = _parse(raw, file=file)
    return settings_from_mapping(data, file=file, source_text=text), data


def read_config(config_dir: str | Path) -> tuple[str, bytes | None]:
    """The configuration file's path and content; None when there is none (defaults apply).
    A reload reads it once here, and every worker is given these same bytes."""
    directory = Path(config_dir)
    path = directory / CONFIG_FILENAME
    if not _is_directory(directory):
        return str(path), None
    return str(path), _read_file(path)


def settings_from_bytes(raw: bytes, *, file: str) -> Settings:
    """Decode, parse and check a whole file's content; ``file`` names it in problems."""
    data, text = _parse(raw, file=file)
    return settings_from_mapping(data, file=file, source_text=text)


def _parse(raw: bytes, *, file: str) -> tuple[dict[str, Any], str]:
    text = _decode(file, raw)
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([_syntax_problem(file, text, exc)]) from None
    except RecursionError:
        raise _file_error(file, "invalid TOML: arrays or tables nested too deeply") from None
    except ValueError as exc:  # a number too long for int() (over 4300 digits)
        raise _file_error(file, f"invalid TOML: {exc}") from None


def settings_from_mapping(
    data: Mapping[str, Any], *, file: str, source_text: str | None
) -> Settings:
    """Check parsed TOML against the schema; return the settings or raise every problem."""
    lines = _LineIndex(source_text or "")
    problems: list[Problem] = []

    def problem(key_path: str, message: str) -> None:
        problems.append(Problem(file, lines.find(key_path), key_path, message))

    sections: dict[str, Any] = {}
    schema = _schema()
    # Walk the file's keys (tomllib keeps their order), not the schema's.
    for name, table in data.items():
        if name == RULES:
            # Imported here: `_ruleconfig` builds on this module's message helpers.
            from ._ruleconfig import parse_rules

            sections[name] = parse_rules(table, problem, lines.find)
        elif name not in schema:
            problem(name, _unknown_message(name, is_section=_is_table(table)))
        elif not isinstance(table, dict):
            problem(name, f"expected a table ([{name}] section), found {describe(table)}")
        else:
            values = _check_section(name, table, problem)
            sections[name] = schema[name].cls(**values)
    if problems:
        # File order, even where a dotted key reopens a table further down.
        problems.sort(key=lambda p: (p.line is None, p.line or 0))
        raise ConfigError(problems)
    return Settings(**sections)


def _is_table(value: Any) -> bool:
    """A table, or an array of tables ([[name]]): what a misspelt section name holds."""
    if isinstance(value, list):
        return bool(value) and all(isinstance(item, dict) for item in value)
    return isinstance(value, dict)


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
    """A value is wrong; the argument says what was expected and what was found."""


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
            problem(key_path, str(exc))
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

    for text in value:
        message = network_problem(text)
        if message is not None:
            raise _Invalid(message)


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


# --- Reading the file ---------------------------------------------------------------------------


def _is_directory(directory: Path) -> bool:
    """False when the directory does not exist; ConfigError when it cannot be one."""
    try:
        mode = os.stat(directory).st_mode
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise _file_error(directory, f"cannot be used: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(mode):
        raise _file_error(directory, "is not a directory")
    return True


def _read_file(path: Path) -> bytes | None:
    """The file's content; None when there is no file; ConfigError when it cannot be used."""
    try:
        return _read_bytes(path)
    except FileNotFoundError:
        if os.path.lexists(path):
            raise _file_error(path, "is a symbolic link to a missing file") from None
        return None
    except PermissionError:
        raise _file_error(path, "cannot be read: permission denied") from None
    except OSError as exc:
        raise _file_error(path, f"cannot be read: {exc.strerror or exc}") from None


def _read_bytes(path: Path) -> bytes:
    # O_NONBLOCK: a FIFO under the config's name must not hang the validator in open().
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise _file_error(path, "is a directory, expected a TOML file")
        if not stat.S_ISREG(mode):
            raise _file_error(path, "is not a regular file, expected a TOML file")
        chunks = []
        size = 0
        while size <= MAX_FILE_BYTES and (chunk := os.read(fd, MAX_FILE_BYTES + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > MAX_FILE_BYTES:
        raise _file_error(path, f"is larger than {MAX_FILE_BYTES} bytes; is it the right file?")
    return b"".join(chunks)


def _decode(file: str, raw: bytes) -> str:
    if b"\0" in raw:
        line = raw.count(b"\n", 0, raw.index(b"\0")) + 1
        raise _file_error(file, "is a binary file (contains NUL bytes), expected TOML text", line)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        byte = raw[exc.start]
        message = f"is not UTF-8 text (byte 0x{byte:02x} at column {column}); TOML must be UTF-8"
        raise _file_error(file, message, line) from None
    # Editors on Windows may start a file with a byte-order mark, which TOML does not allow;
    # it carries no meaning, so it costs the user nothing to accept it.
    return text.removeprefix("\ufeff")


def _file_error(path: str | Path, message: str, line: int | None = None) -> ConfigError:
    return ConfigError([Problem(str(path), line, "", message)])


_TOML_POSITION = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)$")


def _syntax_problem(file: str, text: str, exc: tomllib.TOMLDecodeError) -> Problem:
    # Python 3.11's TOMLDecodeError has the position only in its message.
    message = str(exc)
    match = _TOML_POSITION.search(message)
    if match is None:
        return Problem(file, None, "", f"invalid TOML: {message}")
    reason = message[: match.start()]
    duplicate = _LineIndex(text).duplicate if reason.startswith("Cannot overwrite") else None
    if duplicate is not None:
        # A repeated key: tomllib points past it (at the end of the document, if it is on the
        # last line) and does not name it; the line index finds both places.
        path, line, first = duplicate
        return Problem(file, line, path, f"invalid TOML: key already set on line {first}")
    if match.group(1) is None:
        line_count = text.count("\n") + (0 if text.endswith("\n") else 1)
        return Problem(file, max(line_count, 1), "", f"invalid TOML: {reason} at end of file")
    line, column = int(match.group(1)), int(match.group(2))
    return Problem(file, line, "", f"invalid TOML: {reason} (column {column})")


# --- Where a key is -----------------------------------------------------------------------------

# tomllib returns plain dicts, without positions. These patterns find `[table]` headers and
# `key = ` lines well enough for messages; a file they misread only loses its line numbers.
_HEADER = re.compile(r"\s*\[\[?\s*([^\[\]#=]+?)\s*\]\]?\s*(?:#.*)?$")
_SIMPLE_KEY = r"""(?:[A-Za-z0-9_-]+|"[^"\n]*"|'[^'\n]*')"""  # bare, "basic" or 'literal'
_KEY_LINE = re.compile(rf"\s*({_SIMPLE_KEY}(?:\s*\.\s*{_SIMPLE_KEY})*)\s*=")
_KEY_PART = re.compile(r"\"([^\"]*)\"|'([^']*)'|([A-Za-z0-9_-]+)")


class _LineIndex:
    """Maps dotted key paths to the line that first sets (or opens) them.

    Tables of an array are numbered from 1, as problems name them: the second ``[[rules]]``
    opens ``rules[2]``, and a later ``[rules.match]`` is ``rules[2].match``.
    """

    def __init__(self, text: str) -> None:
        self._lines: dict[str, int] = {}
        self.duplicate: tuple[str, int, int] | None = None  # (path, line, first line)
        self._arrays: dict[str, int] = {}  # array-of-tables path -> tables opened so far
        table = ""
        for number, line in _code_lines(text):
            header = _HEADER.match(line)
            if header is not None:
                table = self._open(_normalise_key(header.group(1)), line, number)
                continue
            key = _KEY_LINE.match(line)
            if key is not None:
                path = ".".join(filter(None, (table, _normalise_key(key.group(1)))))
                self._record(path, number)
                # A dotted key (`match.path = ...`) also opens the tables it names; a problem
                # with `match` as a whole belongs on its first line, not the [[rules]] header.
                while (path := path.rpartition(".")[0]) and path != table:
                    self._lines.setdefault(path, number)

    def _open(self, path: str, line: str, number: int) -> str:
        """The indexed path of the table a header opens; records where it starts."""
        parent, dot, leaf = path.rpartition(".")
        path = self._in_array(parent) + dot + leaf
        if line.lstrip().startswith("[["):
            self._lines.setdefault(path, number)  # the array as a whole: its first table
            count = self._arrays[path] = self._arrays.get(path, 0) + 1
            path = f"{path}[{count}]"
        self._lines.setdefault(path, number)
        return path

    def _in_array(self, path: str) -> str:
        # [rules.match] belongs to the latest [[rules]]: find the longest array prefix.
        parts = path.split(".") if path else []
        for end in range(len(parts), 0, -1):
            prefix = ".".join(parts[:end])
            if prefix in self._arrays:
                return ".".join([f"{prefix}[{self._arrays[prefix]}]", *parts[end:]])
        return path

    def _record(self, path: str, number: int) -> None:
        first = self._lines.setdefault(path, number)
        if first != number and self.duplicate is None:
            self.duplicate = (path, number, first)

    def find(self, path: str) -> int | None:
        # An inline table (`timeouts = {connect_s = 5}`) has no line of its own per key: fall
        # back to the line of the nearest enclosing key.
        while path:
            if path in self._lines:
                return self._lines[path]
            # rules[2] written inline (`rules = [{...}, {...}]`) has no line of its own either:
            # fall back to the array's.
            if path.endswith("]") and "[" in path:
                path = path[: path.rindex("[")]
            else:  # a key that merely ends in "]" (a quoted TOML key) is a plain key
                path = path.rpartition(".")[0]
        return None


def _normalise_key(text: str) -> str:
    # Exactly one of the three groups matched; the others are "".
    return ".".join("".join(part) for part in _KEY_PART.findall(text))


def _code_lines(text: str) -> Iterator[tuple[int, str]]:
    """Numbered lines, skipping those inside multi-line strings (their text is not TOML)."""
    in_string: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        starts_inside = in_string is not None
        for match in re.finditer(r'"""|\'\'\'', line):
            delimiter = match.group()
            if in_string is None:
                in_string = delimiter
            elif in_string == delimiter:
                in_string = None
        if not starts_inside:
            yield number, line
