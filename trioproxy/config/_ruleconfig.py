"""Load ``[[rules]]`` from trioproxy.toml into a `RuleSet`, reporting every problem found.

Called by `_config.settings_from_mapping`, so the proxy and ``trioproxy validate`` check rules
the same way, and each problem names its key path (``rules[2].match.path_regex``, counting
``[[rules]]`` tables from 1), what was found and what is allowed. Everything that can be
decided at load is: regular expressions compile, networks parse, statuses suit their action,
header names are tokens and values are sendable, templates name existing capture groups, and
no rule sits where an earlier one answers every request it would match.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ..core._answers import text_response
from ..core._headers import HOP_BY_HOP
from ..core._ratelimit import DEFAULT_MAX_CLIENTS
from ..core._requestview import normalize_escapes, normalize_path
from ..core._rulemodel import (
    CidrSet,
    HeaderCondition,
    HeaderOp,
    Match,
    OpKind,
    RateLimit,
    Redirect,
    Response,
    Rule,
    RuleSet,
    Template,
    TemplatePart,
    Var,
)
from ._describe import close_matches, describe, quote

__all__ = ["MAX_BODY_BYTES", "network_problem", "parse_rules"]

ProblemSink = Callable[[str, str], None]  # (key path, message)
LineOf = Callable[[str], int | None]

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


def parse_rules(value: Any, problem: ProblemSink, line_of: LineOf) -> RuleSet:
    """The rules of a ``rules`` value (tomllib's list of tables); problems go to ``problem``."""
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        found = describe(value)
        problem("rules", f"expected an array of tables ([[rules]] sections), found {found}")
        return RuleSet()
    rules = []
    for position, table in enumerate(value, start=1):
        rule = _parse_rule(position, table, problem)
        if rule is not None:
            rules.append(rule)
    for later, earlier in unreachable(rules):
        line = line_of(f"rules[{earlier.position}]")
        where = f"{earlier.label}" + (f" (line {line})" if line is not None else "")
        problem(
            f"rules[{later.position}]",
            f"never applies: {where} answers every request this rule matches;"
            " move this rule above it, or narrow that rule's match",
        )
    return RuleSet(tuple(rules))


# --- Tables and their keys ---------------------------------------------------------------------


def _fields(raw: Any, key_path: str, parsers: Mapping[str, Parser], sink: _Sink) -> dict[str, Any]:
    """Parse each key of a table with its parser; report unknown keys and bad values."""
    if not isinstance(raw, dict):
        raise _Invalid(f"expected a table, found {describe(raw)}")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        path = f"{key_path}.{key}"
        parser = parsers.get(key)
        if parser is None:
            sink.report(path, _unknown_key(key_path, key, parsers))
            continue
        try:
            values[key] = parser(value, path, sink)
        except _Invalid as exc:
            sink.report(path, str(exc))
    return values


def _unknown_key(table_path: str, key: str, parsers: Mapping[str, Parser]) -> str:
    # A known key one table too high first ("path" directly in the rule, not under match),
    # then a spelling mistake.
    for table, keys in _NESTED_KEYS.items():
        if key in keys and table in parsers:
            return f"unknown key; did you mean '{table_path}.{table}.{key}'?"
    close = close_matches(key, list(parsers), n=1)
    if close:
        return f"unknown key; did you mean '{table_path}.{close[0]}'?"
    table = "[[rules]]" if table_path.endswith("]") else table_path.rpartition(".")[2]
    return f"unknown key; {table} allows: {', '.join(parsers)}"


def _parse_rule(position: int, table: dict[str, Any], problem: ProblemSink) -> Rule | None:
    path = f"rules[{position}]"
    sink = _Sink(problem)
    values = _fields(table, path, _RULE_PARSERS, sink)
    if not sink.ok:
        return None
    rule = Rule(position=position, **{_RULE_FIELDS.get(k, k): v for k, v in values.items()})
    for key, message in _combination_problems(rule):
        sink.report(f"{path}.{key}" if key else path, message)
    return rule if sink.ok else None


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


_CONFIG_HOST = re.compile(r"[a-z0-9._-]+|\[[0-9a-f:.]+\]")  # as `_requestview` reads Host
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


# --- Header edits -------------------------------------------------------------------------------

# The proxy makes framing and hop-by-hop fields itself (README, "What the proxy does").
_MANAGED = HOP_BY_HOP | {b"content-length"}


def _check_managed(name: bytes, kind: OpKind, *, request: bool) -> None:
    lname = name.lower()
    if lname == b"host" and request and kind is not OpKind.SET:
        done = "removed" if kind is OpKind.REMOVE else "added"
        raise _Invalid(f"a request has exactly one Host: it can be set, not {done}")
    if lname in _MANAGED:
        raise _Invalid(f"{name.decode()} is managed by the proxy (framing, hop-by-hop)")


def _header_edits(*, request: bool) -> Parser:
    def parse(raw: Any, key_path: str, sink: _Sink) -> tuple[HeaderOp, ...]:
        parsers: dict[str, Parser] = {
            "remove": lambda value, _path, _sink: _removals(value, request=request),
            "set": lambda value, _path, _sink: _assignments(value, OpKind.SET, request=request),
            "add": lambda value, _path, _sink: _assignments(value, OpKind.ADD, request=request),
        }
        values = _fields(raw, key_path, parsers, sink)
        # Removals, then sets, then additions, whatever order the table was written in:
        # `set` and `add` of one name then mean "exactly these values".
        ops: tuple[HeaderOp, ...] = ()
        for key in ("remove", "set", "add"):
            ops += values.get(key, ())
        return ops

    return parse


def _removals(raw: Any, *, request: bool) -> tuple[HeaderOp, ...]:
    ops = tuple(HeaderOp(OpKind.REMOVE, _header_name(t)) for t in _strings(raw, "a header name"))
    for op in ops:
        _check_managed(op.name, op.kind, request=request)
    return ops


def _assignments(raw: Any, kind: OpKind, *, request: bool) -> tuple[HeaderOp, ...]:
    ops: list[HeaderOp] = []
    for text, value in _header_table(raw, '{ "X-Frame-Options" = "DENY" }'):
        name = _header_name(text)
        _check_managed(name, kind, request=request)
        # `add` may give several values for one name: { Link = ["<a>", "<b>"] }.
        values = value if kind is OpKind.ADD and isinstance(value, list) else [value]
        if not values:
            raise _Invalid(f"{text}: expected a string or a non-empty array of strings, found []")
        ops += (HeaderOp(kind, name, _header_value(text, item)) for item in values)
    return tuple(ops)


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


# --- Actions -----------------------------------------------------------------------------------


def _rewrite(raw: Any, key_path: str, sink: _Sink) -> Template:
    return _template(raw, rewrite=True)


_REDIRECT_STATUSES = (301, 302, 303, 307, 308)


def _redirect(raw: Any, key_path: str, sink: _Sink) -> Redirect | None:
    parsers: dict[str, Parser] = {
        "to": lambda value, _path, _sink: _template(value, rewrite=False),
        "status": lambda value, _path, _sink: _status(
            value, _REDIRECT_STATUSES, "one of 301, 302, 303, 307, 308"
        ),
    }
    values = _fields(raw, key_path, parsers, sink)
    if "to" not in values and not any(key == "to" for key in raw):
        sink.report(f"{key_path}.to", 'missing: a target such as "https://$host$request_uri"')
    if "to" not in values:
        return None
    return Redirect(values.get("status", 302), values["to"])


def _respond(raw: Any, key_path: str, sink: _Sink) -> Response | None:
    parsers: dict[str, Parser] = {
        "status": lambda value, _path, _sink: _status(
            value, range(200, 600), "a status from 200 to 599"
        ),
        "headers": lambda value, _path, _sink: _response_fields(value),
        "body": lambda value, _path, _sink: _text_body(value),
    }
    values = _fields(raw, key_path, parsers, sink)
    status, body = values.get("status", 200), values.get("body", b"")
    if status in (204, 304) and body:
        sink.report(f"{key_path}.body", f"a {status} response has no body, found {len(body)} bytes")
        return None
    return text_response(status, values.get("headers", ()), body)


def _response_fields(raw: Any) -> tuple[tuple[bytes, bytes], ...]:
    fields = []
    for text, value in _header_table(raw, '{ "Content-Type" = "text/html" }'):
        name = _header_name(text)
        _check_managed(name, OpKind.SET, request=False)
        fields.append((name, _header_value(text, value)))
    return tuple(fields)


def _deny(raw: Any, key_path: str, sink: _Sink) -> Response:
    if raw is True:
        return text_response(403)
    if not isinstance(raw, dict):
        expected = 'true (403) or a table { status = 403, body = "..." }'
        raise _Invalid(f"expected {expected}, found {describe(raw)}")
    parsers: dict[str, Parser] = {
        "status": lambda value, _path, _sink: _status(
            value, range(400, 600), "a status from 400 to 599"
        ),
        "body": lambda value, _path, _sink: _text_body(value),
    }
    values = _fields(raw, key_path, parsers, sink)
    return text_response(values.get("status", 403), (), values.get("body"))


def _rate_limit(raw: Any, key_path: str, sink: _Sink) -> RateLimit | None:
    parsers: dict[str, Parser] = {
        "rate": lambda value, _path, _sink: _rate(value),
        "burst": lambda value, _path, _sink: _integer(
            value, 1, 1_000_000, "an integer from 1 to 1000000 (requests)"
        ),
        "max_clients": lambda value, _path, _sink: _integer(
            value, 1, 10_000_000, "an integer from 1 to 10000000 (clients remembered)"
        ),
    }
    values = _fields(raw, key_path, parsers, sink)
    for key in ("rate", "burst"):
        if key not in raw:
            sink.report(f"{key_path}.{key}", "missing: a rate limit needs rate and burst")
    if "rate" not in values or "burst" not in values:
        return None
    max_clients = values.get("max_clients", DEFAULT_MAX_CLIENTS)
    return RateLimit(values["rate"], values["burst"], max_clients)


def _rate(raw: Any) -> float:
    expected = "a number from 0.001 to 1000000 (requests per second)"
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0.001 <= raw <= 1e6:
        raise _Invalid(f"expected {expected}, found {describe(raw)}")
    return float(raw)


def _name(raw: Any, key_path: str, sink: _Sink) -> str:
    text = _string(raw, "a string")
    if _CONTROL.search(text) or len(text) > 100:
        raise _Invalid(f"expected a one-line name of at most 100 characters, found {quote(text)}")
    return text


_RULE_PARSERS: dict[str, Parser] = {
    "name": _name,
    "match": _match,
    "request_headers": _header_edits(request=True),
    "response_headers": _header_edits(request=False),
    "rewrite": _rewrite,
    "redirect": _redirect,
    "respond": _respond,
    "deny": _deny,
    "allow": _networks,
    "rate_limit": _rate_limit,
}

_RULE_FIELDS = {"request_headers": "request_ops", "response_headers": "response_ops"}

# Keys of the tables within a rule, for "did you mean" when one is written a level too high.
# ("status" is left out: it could belong to match, redirect, respond or deny.)
_NESTED_KEYS: dict[str, tuple[str, ...]] = {
    "match": tuple(key for key in _MATCH_PARSERS if key != "status"),
    "redirect": ("to",),
    "respond": ("headers", "body"),
    "rate_limit": ("rate", "burst", "max_clients"),
    "request_headers": ("set", "add", "remove"),
}


# --- A rule as a whole -------------------------------------------------------------------------


def _combination_problems(rule: Rule) -> Iterator[tuple[str, str]]:
    """(key below the rule, message) for actions that cannot go together or cannot work."""
    answers = [
        key
        for key, given in (("redirect", rule.redirect), ("respond", rule.respond))
        if given is not None
    ]
    if rule.deny is not None and rule.allow is None:
        answers.append("deny")
    edits = [key for key in _EDIT_KEYS if getattr(rule, _RULE_FIELDS.get(key, key))]
    gates = [key for key in ("allow", "rate_limit") if getattr(rule, key) is not None]
    if not (answers or edits or gates):
        yield "", f"has no action; give one of {', '.join(_ACTION_KEYS)}"
    if len(answers) > 1:
        yield answers[1], f"a rule gives one answer; found both {answers[0]} and {answers[1]}"
    if rule.allow is not None and answers:
        message = "allow answers everyone outside the list with deny, and cannot go with"
        yield "allow", f"{message} {answers[0]}"
    for key in ("request_headers", "rewrite"):
        if key in edits and answers:
            yield key, f"has no effect: this rule answers every request it matches ({answers[0]})"
    if rule.match.statuses is not None:
        others = [key for key in (*answers, *edits, *gates) if key != "response_headers"]
        if others or "response_headers" not in edits:
            found = f"found with {others[0]}" if others else "found without response_headers"
            yield "match.status", f"only response_headers can depend on the status; {found}"
    yield from _reference_problems(rule)


_EDIT_KEYS = ("request_headers", "response_headers", "rewrite")
_ACTION_KEYS = (
    "request_headers",
    "response_headers",
    "rewrite",
    "redirect",
    "respond",
    "deny",
    "allow",
    "rate_limit",
)


def _reference_problems(rule: Rule) -> Iterator[tuple[str, str]]:
    pattern = rule.match.path_regex
    for key, template in (("rewrite", rule.rewrite), ("redirect.to", _location(rule))):
        if template is None:
            continue
        for group in template.groups:
            shown = f"${group}" if isinstance(group, int) and group < 10 else f"${{{group}}}"
            if pattern is None:
                yield key, f"{shown} refers to a capture group, but match.path_regex is not set"
            elif not _has_group(pattern, group):
                yield key, f"{shown}: match.path_regex has no such group ({_groups(pattern)})"


def _location(rule: Rule) -> Template | None:
    return rule.redirect.location if rule.redirect is not None else None


def _has_group(pattern: re.Pattern[bytes], group: int | str) -> bool:
    if isinstance(group, int):
        return 0 <= group <= pattern.groups
    return group in pattern.groupindex


def _groups(pattern: re.Pattern[bytes]) -> str:
    names = "".join(f", ${{{name}}}" for name in pattern.groupindex)
    return f"groups: $0 to ${pattern.groups}{names}" if pattern.groups else "it has none"


# --- Rules no request can reach ------------------------------------------------------------------


def unreachable(rules: list[Rule]) -> Iterator[tuple[Rule, Rule]]:
    """(later, earlier) for each rule that an earlier one always answers before it applies.

    Sound, not complete: reported only when every request the later rule matches certainly
    matches the earlier one, and the earlier one answers all of those.
    """
    for index, later in enumerate(rules):
        earlier = next((e for e in rules[:index] if _answers_first(e, later)), None)
        if earlier is not None:
            yield later, earlier


def _answers_first(earlier: Rule, later: Rule) -> bool:
    return _answers_all(earlier, later) and _implies(later.match, earlier.match)


def _answers_all(earlier: Rule, later: Rule) -> bool:
    if earlier.always_answers:
        return True
    # A redirect to "$host..." lets a request without a usable Host go on; a later rule
    # that names hosts only ever matches requests that have one.
    gated = earlier.allow is not None or earlier.rate_limit is not None
    return earlier.redirect is not None and not gated and later.match.hosts is not None


def _implies(later: Match, earlier: Match) -> bool:
    """Every request matching ``later`` also matches ``earlier``."""
    return (
        _subset(later.methods, earlier.methods)
        and _subset(later.hosts, earlier.hosts)
        and (earlier.scheme is None or later.scheme == earlier.scheme)
        and _covered(later.clients, earlier.clients)
        and all(any(mine.implies(theirs) for mine in later.headers) for theirs in earlier.headers)
        and _path_implies(later, earlier)
    )


def _covered(later: CidrSet | None, earlier: CidrSet | None) -> bool:
    return earlier is None or (later is not None and earlier.covers(later))


def _subset(later: frozenset[bytes] | None, earlier: frozenset[bytes] | None) -> bool:
    return earlier is None or (later is not None and later <= earlier)


def _path_implies(later: Match, earlier: Match) -> bool:
    exact = later.paths
    if earlier.paths is not None and not (exact is not None and exact <= earlier.paths):
        return False
    if earlier.path_prefixes is not None:
        prefixes = earlier.path_prefixes
        known = [paths for paths in (exact, later.path_prefixes) if paths is not None]
        if not any(all(path.startswith(prefixes) for path in paths) for paths in known):
            return False
    if earlier.path_regex is not None:
        same = later.path_regex is not None and later.path_regex == earlier.path_regex
        searched = exact is not None and all(earlier.path_regex.search(p) for p in exact)
        return same or searched
    return True
