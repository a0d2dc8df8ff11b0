"""Parse a rule's ``match`` table into a `Match`: which requests (and responses) the rule is for."""

from __future__ import annotations

import re
from typing import Any

from ..core._requestview import normalize_escapes, normalize_path
from ..core._rulemodel import HeaderCondition, Match
from ._describe import describe, quote
from ._rulevalues import (
    _TOKEN,
    Parser,
    _fields,
    _header_name,
    _header_table,
    _header_value,
    _Invalid,
    _networks,
    _regex,
    _Sink,
    _strings,
)

# --- match --------------------------------------------------------------------------------------


def _path(text: str, *, prefix: bool) -> bytes:
    """A path as rules compare it: visible ASCII, normalised, or it could never match."""
    bad = next((c for c in text if not "\x21" <= c <= "\x7e" or c in "?#"), None)
    if bad is not None:
        reason = "never in a path: percent-encode it" if bad not in "?#" else "not part of a path"
        raise _Invalid(f"{quote(bad)} is {reason}, found {quote(text)}")
    if not text.startswith("/"):
        raise _Invalid(f'expected a path starting with "/", found {quote(text)}')
    raw = text.encode("ascii")
    # A prefix's last segment may be the start of a longer one: "/a/." matches "/a/.well-known".
    head, _, tail = raw.rpartition(b"/") if prefix else (raw, b"", b"")
    head = head + b"/" if prefix else head
    normal = normalize_path(head) + normalize_escapes(tail)
    if normal != raw:
        raise _Invalid(
            "never matches as written: requests are compared after normalisation (dot"
            " segments, repeated slashes, escapes of unreserved characters);"
            f" write {quote(normal.decode())}, found {quote(text)}"
        )
    return raw


def _paths(raw: Any, key_path: str, sink: _Sink) -> frozenset[bytes]:
    return frozenset(_path(text, prefix=False) for text in _strings(raw, "a path"))


def _path_prefixes(raw: Any, key_path: str, sink: _Sink) -> tuple[bytes, ...]:
    return tuple(_path(text, prefix=True) for text in _strings(raw, "a path prefix"))


def _path_regex(raw: Any, key_path: str, sink: _Sink) -> re.Pattern[bytes]:
    return _regex(raw)


_STANDARD_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "PATCH")


def _methods(raw: Any, key_path: str, sink: _Sink) -> frozenset[bytes]:
    methods = set()
    for text in _strings(raw, 'a method such as "GET"'):
        if text.upper() in _STANDARD_METHODS and text != text.upper():
            # Methods are case-sensitive (RFC 9110 9.1): "get" never matches a GET.
            raise _Invalid(f"methods are case-sensitive; did you mean {quote(text.upper())}?")
        if not _TOKEN.fullmatch(text):
            raise _Invalid(f'expected a method such as "GET", found {quote(text)}')
        methods.add(text.encode("ascii"))
    return frozenset(methods)


_CONFIG_HOST = re.compile(r"[a-z0-9._-]+|\[[0-9a-f:.]+\]")  # as `_rules._clean_host` reads Host
_WITH_PORT = re.compile(r"(.+):[0-9]+")


def _hosts(raw: Any, key_path: str, sink: _Sink) -> frozenset[bytes]:
    hosts = set()
    for text in _strings(raw, 'a host name such as "www.example.com"'):
        host = text.strip().lower().rstrip(".")  # compared case-insensitively anyway
        if _CONFIG_HOST.fullmatch(host) is None:
            port = _WITH_PORT.fullmatch(host)
            hint = f" (without the port: {quote(port.group(1))})" if port else ""
            raise _Invalid(f"expected a host name or IP address{hint}, found {quote(text)}")
        hosts.add(host.encode("ascii"))
    return frozenset(hosts)


def _scheme(raw: Any, key_path: str, sink: _Sink) -> bytes:
    if raw not in ("http", "https"):
        expected = '"http" or "https" (as X-Forwarded-Proto says)'
        raise _Invalid(f"expected {expected}, found {describe(raw)}")
    return str(raw).encode("ascii")


def _header_present(raw: Any, key_path: str, sink: _Sink) -> tuple[HeaderCondition, ...]:
    names = _strings(raw, "a header name")
    return tuple(HeaderCondition(_header_name(name).lower()) for name in names)


def _header_equals(raw: Any, key_path: str, sink: _Sink) -> tuple[HeaderCondition, ...]:
    pairs = _header_table(raw, '{ "X-Env" = "staging" }')
    return tuple(
        HeaderCondition(_header_name(name).lower(), value=_header_value(name, value))
        for name, value in pairs
    )


def _header_regex(raw: Any, key_path: str, sink: _Sink) -> tuple[HeaderCondition, ...]:
    pairs = _header_table(raw, '{ "User-Agent" = "(?i)bot" }')
    return tuple(
        HeaderCondition(_header_name(name).lower(), pattern=_regex(value)) for name, value in pairs
    )


_STATUS_CLASS = re.compile(r"[1-5]xx")


def _statuses(raw: Any, key_path: str, sink: _Sink) -> frozenset[int]:
    statuses: set[int] = set()
    for item in raw if isinstance(raw, list) and raw else [raw]:
        if isinstance(item, str) and _STATUS_CLASS.fullmatch(item):
            first = int(item[0]) * 100
            statuses.update(range(first, first + 100))
        elif not isinstance(item, bool) and isinstance(item, int) and 100 <= item <= 599:
            statuses.add(item)
        else:
            expected = 'a status (100 to 599), a class such as "5xx", or an array of them'
            raise _Invalid(f"expected {expected}, found {describe(raw)}")
    return frozenset(statuses)


_MATCH_PARSERS: dict[str, Parser] = {
    "path": _paths,
    "path_prefix": _path_prefixes,
    "path_regex": _path_regex,
    "methods": _methods,
    "hosts": _hosts,
    "scheme": _scheme,
    "clients": _networks,
    "header_present": _header_present,
    "header_equals": _header_equals,
    "header_regex": _header_regex,
    "status": _statuses,
}

# Match keys whose value is one `Match` field (the header keys all feed `Match.headers`).
_MATCH_FIELDS = {
    "path": "paths",
    "path_prefix": "path_prefixes",
    "path_regex": "path_regex",
    "methods": "methods",
    "hosts": "hosts",
    "scheme": "scheme",
    "clients": "clients",
    "status": "statuses",
}


def _match(raw: Any, key_path: str, sink: _Sink) -> Match:
    values = _fields(raw, key_path, _MATCH_PARSERS, sink)
    headers: tuple[HeaderCondition, ...] = ()
    for key in ("header_present", "header_equals", "header_regex"):
        headers += values.get(key, ())
    fields = {_MATCH_FIELDS[key]: value for key, value in values.items() if key in _MATCH_FIELDS}
    return Match(headers=headers, **fields)
