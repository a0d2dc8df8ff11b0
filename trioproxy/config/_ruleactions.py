"""Parse a rule's actions: header edits, rewrite, redirect, respond, deny, rate_limit and
max_request_body_bytes."""

from __future__ import annotations

from typing import Any

from ..core._answers import text_response
from ..core._headers import HOP_BY_HOP
from ..core._ratelimit import DEFAULT_MAX_CLIENTS
from ..core._rulemodel import HeaderOp, OpKind, RateLimit, Redirect, Response, Template
from ._describe import describe
from ._rulevalues import (
    Parser,
    _fields,
    _header_name,
    _header_table,
    _header_value,
    _integer,
    _Invalid,
    _Sink,
    _status,
    _strings,
    _template,
    _text_body,
)

# --- Header edits -------------------------------------------------------------------------------

# The proxy makes framing and hop-by-hop fields itself (docs/design/request-path.md).
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


def _max_request_body_bytes(raw: Any, key_path: str, sink: _Sink) -> int:
    # As limits.max_request_body_bytes; 0 lifts the global limit where this rule matches.
    return _integer(raw, 0, 1 << 40, "an integer from 0 to 1099511627776 (bytes; 0: no limit)")


def _rate(raw: Any) -> float:
    expected = "a number from 0.001 to 1000000 (requests per second)"
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0.001 <= raw <= 1e6:
        raise _Invalid(f"expected {expected}, found {describe(raw)}")
    return float(raw)
