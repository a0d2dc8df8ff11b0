"""Parse one value of a [[rules]] table: strings, numbers, headers, regexes, networks, templates.

Also the table walk every level of a rule shares (`_fields`): each key to its parser, unknown
keys and bad values reported with their key paths. Problems are raised as `_Invalid` (one
value) or reported to a `_Sink` (a table).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from typing import Any

from ..core._rulemodel import CidrSet, Template, TemplatePart, Var
from ._describe import close_matches, describe, quote

__all__ = ["MAX_BODY_BYTES", "ProblemSink", "network_problem"]

ProblemSink = Callable[[str, str], None]  # (key path, message)

# A maintenance page or a robots.txt; anything larger belongs on the origin.
MAX_BODY_BYTES = 65536


class _Invalid(Exception):
    """A value is wrong; the argument is the message (what was expected, what was found)."""


class _Sink:
    """Passes problems on, remembering whether there were any (a broken rule is not built)."""

    def __init__(self, problem: ProblemSink) -> None:
        self._problem = problem
        self.ok = True

    def report(self, key_path: str, message: str) -> None:
        self.ok = False
        self._problem(key_path, message)


# Parses one key's value; reports problems inside it to the sink, or raises _Invalid.
Parser = Callable[[Any, str, _Sink], Any]


# --- Tables and their keys ---------------------------------------------------------------------


def _fields(
    raw: Any,
    key_path: str,
    parsers: Mapping[str, Parser],
    sink: _Sink,
    nested: Mapping[str, tuple[str, ...]] | None = None,
) -> dict[str, Any]:
    """Parse each key of a table with its parser; report unknown keys and bad values.

    ``nested`` gives the keys of the tables within this one, for "did you mean" when one is
    written a level too high (only a rule has tables within it)."""
    if not isinstance(raw, dict):
        raise _Invalid(f"expected a table, found {describe(raw)}")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        path = f"{key_path}.{key}"
        parser = parsers.get(key)
        if parser is None:
            sink.report(path, _unknown_key(key_path, key, parsers, nested or {}))
            continue
        try:
            values[key] = parser(value, path, sink)
        except _Invalid as exc:
            sink.report(path, str(exc))
    return values


def _unknown_key(
    table_path: str, key: str, parsers: Mapping[str, Parser], nested: Mapping[str, tuple[str, ...]]
) -> str:
    # A known key one table too high first ("path" directly in the rule, not under match),
    # then a spelling mistake.
    for table, keys in nested.items():
        if key in keys and table in parsers:
            return f"unknown key; did you mean '{table_path}.{table}.{key}'?"
    close = close_matches(key, list(parsers), n=1)
    if close:
        return f"unknown key; did you mean '{table_path}.{close[0]}'?"
    table = "[[rules]]" if table_path.endswith("]") else table_path.rpartition(".")[2]
    return f"unknown key; {table} allows: {', '.join(parsers)}"


# --- Plain values ------------------------------------------------------------------------------


def _string(raw: Any, what: str) -> str:
    if not isinstance(raw, str):
        raise _Invalid(f"expected {what}, found {describe(raw)}")
    return raw


def _strings(raw: Any, what: str) -> tuple[str, ...]:
    """A string, or a non-empty array of strings (any of which may match)."""
    if isinstance(raw, str):
        return (raw,)
    if not isinstance(raw, list) or not raw or not all(isinstance(item, str) for item in raw):
        raise _Invalid(f"expected {what} or a non-empty array of them, found {describe(raw)}")
    return tuple(raw)


def _integer(raw: Any, low: int, high: int, what: str) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not low <= raw <= high:
        raise _Invalid(f"expected {what}, found {describe(raw)}")
    return raw


def _status(raw: Any, allowed: tuple[int, ...] | range, what: str) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw not in allowed:
        raise _Invalid(f"expected {what}, found {describe(raw)}")
    return raw


def _text_body(raw: Any) -> bytes:
    body = _string(raw, "a string").encode("utf-8")
    if len(body) > MAX_BODY_BYTES:
        raise _Invalid(f"expected at most {MAX_BODY_BYTES} bytes, found {len(body)} bytes")
    return body


# RFC 9110 5.6.2: a field name is a token.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 9110 5.5: no control character but HTAB in a field value.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _header_name(raw: str) -> bytes:
    if not _TOKEN.fullmatch(raw):
        expected = "a header name (letters, digits and !#$%&'*+-.^_`|~)"
        raise _Invalid(f"expected {expected}, found {quote(raw)}")
    return raw.encode("ascii")


def _header_value(name: str, raw: Any) -> bytes:
    value = _string(raw, f"a string as the value of {name}")
    control = _CONTROL.search(value)
    if control is not None:
        character = f"\\u{ord(control.group()):04x}"
        raise _Invalid(f"{name}: a header value cannot contain {character}, found {quote(value)}")
    if value != value.strip(" \t"):
        # h11 (RFC 9110 5.5) refuses to send such a value: it would fail on every request.
        message = "a header value cannot start or end with whitespace"
        raise _Invalid(f"{name}: {message}, found {quote(value)}")
    return value.encode("utf-8")


def _header_table(raw: Any, example: str) -> list[tuple[str, Any]]:
    """A table keyed by header names, each named once whatever its case."""
    if not isinstance(raw, dict):
        raise _Invalid(f"expected a table such as {example}, found {describe(raw)}")
    seen: dict[str, str] = {}
    for name in raw:
        first = seen.setdefault(name.lower(), name)
        if first != name:
            raise _Invalid(f"{quote(first)} and {quote(name)} name the same header")
    return list(raw.items())


def _regex(raw: Any) -> re.Pattern[bytes]:
    text = _string(raw, "a regular expression (Python re syntax)")
    try:
        # Bytes patterns: requests are bytes, and decoding every path would cost more than
        # matching it. Paths are ASCII (percent-encoded), so \w and \d mean what they say.
        return re.compile(text.encode("utf-8"))
    except re.error as exc:
        raise _Invalid(
            f"expected a Python regular expression: {exc}, found {quote(text)}"
        ) from None
    except (RecursionError, OverflowError) as exc:  # absurd nesting or repeat counts
        raise _Invalid(f"expected a Python regular expression: {exc}") from None


_NETWORK_EXAMPLE = 'an IP network such as "10.0.0.0/8" or "2001:db8::/32"'
_IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def _networks(raw: Any, key_path: str, sink: _Sink) -> CidrSet:
    return CidrSet(tuple(_network(text) for text in _strings(raw, _NETWORK_EXAMPLE)))


def network_problem(text: str) -> str | None:
    """What is wrong with ``text`` as an IP network, or None (for `forwarding.trusted_proxies`)."""
    try:
        _network(text)
    except _Invalid as exc:
        return str(exc)
    return None


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        network = ipaddress.ip_network(text.strip())
    except ValueError as exc:
        hint = ""
        if "has host bits set" in str(exc):  # "10.0.0.1/8": a typo, or an address meant
            hint = f"; did you mean {quote(str(ipaddress.ip_network(text.strip(), False)))}?"
        raise _Invalid(f"expected {_NETWORK_EXAMPLE}, found {quote(text)}{hint}") from None
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_IPV4_MAPPED):
        # Clients are compared as IPv4 however they were written (`client_address`).
        raise _Invalid(f"write IPv4-mapped networks as IPv4, found {quote(text)}")
    return network


# --- Templates (rewrite, redirect.to) --------------------------------------------------------

_PATH_CHARS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/%"
)  # RFC 3986 pchar and "/"; no "?" (the query string is kept as it is)
_URL_CHARS = frozenset(map(chr, range(0x21, 0x7F))) - set('"<>\\^`{|}')
_REFERENCE = re.compile(r"\$(?:(\$)|\{([^{}]*)\}|([0-9])|([A-Za-z_][A-Za-z0-9_]*))?")
_VARIABLES = {var.value: var for var in Var}


def _template(raw: Any, *, rewrite: bool) -> Template:
    what = 'a path such as "/new/$1"' if rewrite else 'a URL such as "https://$host$request_uri"'
    text = _string(raw, what)
    parts = _template_parts(text)
    literal = b"".join(part for part in parts if isinstance(part, bytes)).decode()
    bad = next((c for c in literal if c not in (_PATH_CHARS if rewrite else _URL_CHARS)), None)
    if bad is not None:
        where = "a rewritten path (the query string is kept)" if rewrite else "a URL"
        raise _Invalid(f"{quote(bad)} cannot appear in {where}, found {quote(text)}")
    if not _starts_well(parts, rewrite=rewrite):
        raise _Invalid(f"expected {what}, found {quote(text)}")
    query = next((p for p in parts if p in (Var.QUERY, Var.REQUEST_URI)), None)
    if rewrite and isinstance(query, Var):
        # The rewritten path gets the original query string anyway; this would double it.
        raise _Invalid(f"${query.value} cannot appear in a rewrite: the query string is kept")
    return Template(text, parts)


def _template_parts(text: str) -> tuple[TemplatePart, ...]:
    parts: list[TemplatePart] = []
    position = 0
    for match in _REFERENCE.finditer(text):
        parts.append(text[position : match.start()].encode())
        position = match.end()
        dollar, braced, digit, word = match.groups()
        if dollar:
            parts.append(b"$")
        elif digit:
            parts.append(int(digit))
        elif braced is not None:
            parts.append(_braced_reference(braced))
        elif word is not None:
            parts.append(_variable(word))
        else:
            raise _Invalid(f'a lone "$" (write "$$" for a dollar sign), found {quote(text)}')
    parts.append(text[position:].encode())
    return _merge_literals(parts)


def _braced_reference(name: str) -> TemplatePart:
    if name.isdigit():
        return int(name)
    if name in _VARIABLES or not name.isidentifier():
        return _variable(name)
    return name  # a named group of match.path_regex (checked with the rule)


def _variable(name: str) -> Var:
    if name in _VARIABLES:
        return _VARIABLES[name]
    close = close_matches(name, list(_VARIABLES), n=1)
    hint = f"did you mean ${close[0]}? " if close else ""
    variables = ", ".join(f"${var.value}" for var in Var)
    raise _Invalid(
        f"unknown variable ${name}; {hint}variables: {variables};"
        " capture groups: $1 to $9, ${10}, ${name}"
    )


def _merge_literals(parts: list[TemplatePart]) -> tuple[TemplatePart, ...]:
    merged: list[TemplatePart] = []
    for part in parts:
        if isinstance(part, bytes) and merged and isinstance(merged[-1], bytes):
            merged[-1] += part
        elif part != b"":
            merged.append(part)
    return tuple(merged)


def _starts_well(parts: tuple[TemplatePart, ...], *, rewrite: bool) -> bool:
    first = parts[0] if parts else b""
    if not isinstance(first, bytes):
        # "$scheme://..." is an absolute URL too; nothing else may come first.
        second = parts[1] if len(parts) > 1 else b""
        follows = isinstance(second, bytes) and second.startswith(b"://")
        return not rewrite and first is Var.SCHEME and follows
    if rewrite:
        return first.startswith(b"/")
    return first.startswith(b"/") or first.lower().startswith((b"http://", b"https://"))
