"""One access-log record per request, and its rendering as a JSON or LTSV line (pure).

The field names follow Section's nginx ``section_json`` format, so the platform's log pipeline
and metrics sidecar read our lines like theirs. Two rules come from that pipeline:

- Every value is a string, numbers included. The metrics sidecar reads values as Go
  ``interface{}``, formats them with ``%v`` and parses with ``Atoi``: a JSON number of 1e6 or
  more becomes "1e+06" and counts as 0. nginx writes every value quoted too.
- A missing value is "-", as nginx writes an empty variable (no status sent, no upstream).

A line is rendered without its trailing newline: the writer (`_logwriter`) frames lines, and
relies on a rendered line never containing one (JSON and LTSV escaping both guarantee it).

Header values are bytes on the wire; they are decoded as latin-1 (every byte maps to one
character, so decoding never fails) and escaped: JSON as ``\\u00XX`` (the output is pure ASCII);
LTSV as ``\\xXX`` for bytes outside printable ASCII, like nginx's default log escaping.
"""

from __future__ import annotations

import operator
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from json.encoder import encode_basestring_ascii
from typing import Any

__all__ = [
    "FIELD_GETTERS",
    "AccessRecord",
    "ExchangeNotes",
    "Formatter",
    "ltsv_escape",
    "make_formatter",
    "make_logger",
    "settle_bytes",
]

# Every field a line can carry, in the default order (settings' access_log.fields picks from these).
ACCESS_LOG_FIELDS: tuple[str, ...] = (
    "time",
    "time_taken_ms",
    "request",
    "method",
    "path",
    "status",
    "bytes",
    "response_body_bytes",
    "request_length",
    "content_type",
    "hostname",
    "referrer",
    "useragent",
    "http_x_forwarded_proto",
    "remote_addr",
    "x_forwarded_for",
    "upstream_status",
    "upstream_addr",
    "upstream_time_ms",
    "section_io_id",
    "request_id",
    "section_io_tag",
    "trace_id",
    "span_id",
)


@dataclass(slots=True)
class AccessRecord:
    """What the proxy knew about one exchange when it ended; filled in as the exchange goes.

    Times are seconds (trio clock for durations, wall clock for ``start_wall``); header values
    are the raw bytes from the request, decoded only when a line is rendered.
    """

    start_wall: float  # time.time() when the request head was complete
    peer: str  # downstream peer address (IP only)
    method: bytes = b""
    target: bytes = b""
    http_version: bytes = b"1.1"
    host: bytes = b""
    referrer: bytes = b""
    user_agent: bytes = b""
    x_forwarded_proto: bytes = b""
    x_forwarded_for: bytes = b""  # as received from downstream
    true_client_ip: bytes = b""
    section_io_id: bytes = b""
    request_id: bytes = b""
    status: int = 0  # status sent to the client; 0 = none sent (client gone)
    bytes_sent: int = 0  # bytes written to the client, head included
    bytes_received: int = 0  # bytes read from the client: head, body (or tunnel) included
    body_bytes_sent: int = 0  # body bytes queued; `settle_bytes` cuts it to those written
    body_start: int = -1  # the connection's byte count where the response body starts
    content_type: bytes = b""
    section_io_tag: bytes = b""  # the upstream response's section-io-tag (custom log tag)
    duration_s: float = 0.0
    upstream_status: int = 0  # 0 = no upstream response
    upstream_addr: str = ""
    upstream_duration_s: float = -1.0  # < 0 = no upstream exchange
    # From a valid W3C traceparent (lower-case hex): its trace-id and parent-id, the span
    # this request was sent from. Empty without one.
    trace_id: bytes = b""
    span_id: bytes = b""
    # Fields hooks added (name, value), written after the configured ones.
    extra: tuple[tuple[str, str], ...] = ()
    faults: tuple[str, ...] = ()  # labels of the faults applied (for the journal)
    notes: ExchangeNotes | None = None  # what only the journal keeps; None when it is off


@dataclass(slots=True)
class ExchangeNotes:
    """The heads of one exchange, as the journal shows them (collected only when it is on)."""

    request_headers: Sequence[tuple[bytes, bytes]] = ()  # as received
    forwarded_target: bytes | None = None  # as sent upstream (None: not forwarded)
    forwarded_headers: Sequence[tuple[bytes, bytes]] | None = None
    upstream_headers: Sequence[tuple[bytes, bytes]] | None = None  # the response, as received
    response_headers: Sequence[tuple[bytes, bytes]] | None = None  # the response, as sent
    first_byte_s: float | None = None  # when the response head was queued for the client
    upstream_reused: bool | None = None
    rules: tuple[str, ...] = ()  # labels of the rules whose answer or actions applied
    hooks: tuple[str, ...] = ()  # labels of the hooks the rules ran
    request_body: bytearray | None = None  # its first bytes, when the journal keeps them


def settle_bytes(record: AccessRecord, sent_before: int, sent_now: int) -> None:
    """Fill ``bytes`` and ``response_body_bytes`` from what was written to the client (its
    connection's byte counts before the request and now), not what was queued: nginx's
    ``$body_bytes_sent``, so an aborted response never logs more body than ``bytes``."""
    record.bytes_sent = sent_now - sent_before
    written = sent_now - record.body_start if record.body_start >= 0 else 0
    record.body_bytes_sent = max(0, min(record.body_bytes_sent, written))


Formatter = Callable[[AccessRecord], str]

MISSING = "-"


def make_formatter(fmt: str, fields: tuple[str, ...] = ACCESS_LOG_FIELDS) -> Formatter:
    """Build the renderer for ``fmt`` ("json" or "ltsv") writing ``fields`` in that order.

    No fields (``()``) means every field, as in the settings' default.

    The renderer is generated code, in two paths. The usual one (`_quick`) tests every value
    that came from the network at once, in C (one regular expression over them all), and when
    none needs escaping, as nearly always, writes the line with one ``str.format`` call: the
    values go in as they are, split by the same match, with no Python work per field. A record
    with a value to escape, or with no request (an error answer's), takes the other path: one
    expression per field, each value escaped (`_json_pieces`, `_ltsv_pieces`). Both write the
    same line (a differential test holds them to it). Only expressions from the fixed
    `_FIELDS` table go into the generated source, never anything from the configuration or
    the network.
    """
    return _renderer(fmt, fields, None)


def make_logger(
    fmt: str, fields: tuple[str, ...], write: Callable[[str], object]
) -> Callable[[AccessRecord], None]:
    """`make_formatter`'s renderer that hands each line to ``write`` itself (a frame less per
    request than a function that renders, then writes)."""
    return _renderer(fmt, fields, write)


def _renderer(
    fmt: str, fields: tuple[str, ...], write: Callable[[str], object] | None
) -> Callable[[AccessRecord], Any]:
    fields = fields or ACCESS_LOG_FIELDS
    unknown = [name for name in fields if name not in _FIELDS]
    if unknown:
        raise ValueError(f"unknown access-log fields: {', '.join(unknown)}")
    if fmt not in ("json", "ltsv"):
        raise ValueError(f"unknown access-log format {fmt!r}; expected 'json' or 'ltsv'")
    pieces = _json_pieces(fields) if fmt == "json" else _ltsv_pieces(fields)
    extra = f"_{fmt}_extra"
    return _quick(fmt, fields, _compile(pieces, extra), extra, write)


# A piece of a line: constant text, or a Python expression over the record `r`.
_Piece = tuple[bool, str]  # (is_expression, text)


def _json_pieces(fields: tuple[str, ...]) -> list[_Piece]:
    pieces: list[_Piece] = []
    for index, name in enumerate(fields):
        expression, may_need_escaping = _FIELDS[name]
        pieces.append((False, ("{" if index == 0 else ",") + f'"{name}":'))
        if name in _HEADER_FIELDS:
            # Most of them are absent from most requests: "-" is written ready-quoted, not
            # encoded each time.
            attribute = _HEADER_FIELDS[name]
            pieces.append(
                (True, f'(_json(r.{attribute}.decode("latin-1")) if r.{attribute} else \'"-"\')')
            )
        elif may_need_escaping:
            # The C-accelerated JSON string encoder quotes the text and escapes everything
            # outside printable ASCII, so a line is always one line of valid ASCII JSON.
            pieces.append((True, f"_json({expression})"))
        else:
            pieces += [(False, '"'), (True, expression), (False, '"')]
    pieces.append((False, "}"))
    return pieces


def _ltsv_pieces(fields: tuple[str, ...]) -> list[_Piece]:
    pieces: list[_Piece] = []
    for index, name in enumerate(fields):
        expression, may_need_escaping = _FIELDS[name]
        pieces.append((False, ("" if index == 0 else "\t") + f"{name}:"))
        pieces.append((True, f"_ltsv({expression})" if may_need_escaping else expression))
    return pieces


def _compile(pieces: list[_Piece], extra: str) -> Formatter:
    items = [text if is_expression else repr(text) for is_expression, text in _merged(pieces)]
    source = (
        f"def render(r):\n    line = ''.join(({', '.join(items)},))\n"
        f"    return {extra}(line, r) if r.extra else line\n"
    )
    return _defined(source, _NAMESPACE)


def _defined(source: str, names: dict[str, Any]) -> Formatter:
    namespace = dict(names)
    exec(source, namespace)
    # Taken out of its own globals: left in, function and namespace form a cycle that only a
    # full collection frees, and every reload made one (RSS crept until it ran).
    render: Formatter = namespace.pop("render")
    return render


# --- The usual path: no value to escape -----------------------------------------------------------

# The characters a value may hold and still be written as it is: printable ASCII, but for
# the quote and the backslash in JSON (`encode_basestring_ascii` escapes those and everything
# else) and the backslash in LTSV (`ltsv_escape`). NUL separates the values in the text
# matched, and is in neither class: a value holding one fails the match.
_PLAIN = {"json": r"[ !#-\[\]-~]", "ltsv": r"[ -\[\]-~]"}
# The same without "?", for the path (the target up to its first "?").
_PLAIN_PATH = {"json": r"[ !#->@-\[\]-~]", "ltsv": r"[ ->@-\[\]-~]"}

# The fields computed in Python on the usual path (their values never need escaping), as
# expressions over the record `r`; str.format writes a number as str() does.
_COMPUTED: dict[str, str] = {
    "time_taken_ms": "round(r.duration_s * 1000)",
    "status": '(r.status or "-")',
    "bytes": "r.bytes_sent",
    "response_body_bytes": "r.body_bytes_sent",
    "request_length": "r.bytes_received",
    "upstream_status": '(r.upstream_status or "-")',
    "upstream_time_ms": (
        '("-" if r.upstream_duration_s < 0 else round(r.upstream_duration_s * 1000))'
    ),
}


def _quick(
    fmt: str,
    fields: tuple[str, ...],
    slow: Formatter,
    extra: str,
    write: Callable[[str], object] | None,
) -> Callable[[AccessRecord], Any]:
    """The renderer's usual path, with ``slow`` (every value escaped) for the rest; with
    ``write``, the line is handed to it rather than returned.

    The values from the network (bytes, decoded as latin-1) and the addresses are joined by
    NUL into one text, matched whole against one group per value, each of plain characters:
    no match, and the record takes ``slow``. Else the line is one ``str.format`` of a
    template holding the configured fields in order; its arguments are the groups as they
    are (for the request), the groups with "-" for empty ones (`_dash`), then the computed
    values.
    """
    plain, plain_path = _PLAIN[fmt], _PLAIN_PATH[fmt]
    needed: list[str] = []  # record attributes the line shows, bytes ones first
    for name in fields:
        if name == "request":
            needed += ["method", "target", "http_version"]
        elif name == "path":
            needed.append("target")
        elif name == "remote_addr":
            needed += ["true_client_ip", "peer"]
        elif name not in _COMPUTED and name != "time":
            needed.append(_HEADER_FIELDS.get(name, name))
    text_ones = [a for a in ("peer", "upstream_addr") if a in needed]
    byte_ones = [a for a in dict.fromkeys(needed) if a not in text_ones]
    group: dict[str, int] = {}  # a value's group, by attribute name (and "path")
    patterns: list[str] = []
    for attribute in byte_ones + text_ones:
        group[attribute] = len(group)
        if attribute == "target" and "path" in fields:
            group["path"] = len(group)
            patterns.append(f"(({plain_path}*)(?:\\?{plain}*)?)")
        elif attribute == "method" and "request" in fields:
            patterns.append(f"({plain}+)")  # no method, no request ("-"): the other path
        else:
            patterns.append(f"({plain}*)")
    groups = len(group)
    arguments: list[str] = []
    raw = dashed = 0
    if "request" in fields:
        arguments.append("*g")
        dashed = groups
    if groups:
        arguments.append("*map(_dash, g, g)")
    computed: list[str] = []  # the arguments after the groups
    at = dashed + groups  # the next computed argument's index
    quote = '"' if fmt == "json" else ""
    template: list[str] = []
    for index, name in enumerate(fields):
        if fmt == "json":
            template.append(("{{" if index == 0 else ",") + f'"{name}":{quote}')
        else:
            template.append(("" if index == 0 else "\t") + f"{name}:")
        if name == "request":
            method, target = raw + group["method"], raw + group["target"]
            template.append(f"{{{method}}} {{{target}}} HTTP/{{{raw + group['http_version']}}}")
        elif name == "time":
            computed += ["*_second_and_offset(second)", "ms"]
            template.append(f"{{{at}}}.{{{at + 2}:03d}}{{{at + 1}}}")
            at += 3
        elif name == "remote_addr":
            computed.append(f'(g[{group["true_client_ip"]}] or g[{group["peer"]}] or "-")')
            template.append(f"{{{at}}}")
            at += 1
        elif name in _COMPUTED:
            computed.append(_COMPUTED[name])
            template.append(f"{{{at}}}")
            at += 1
        else:
            template.append(f"{{{dashed + group[_HEADER_FIELDS.get(name, name)]}}}")
        template.append(quote)
    if fmt == "json":
        template.append("}}")
    ending = f"{extra}(line, r) if r.extra else line"
    source = ["def render(r):"]
    if groups:
        parts = [f"{{r.{attribute}}}" for attribute in text_ones]
        if len(byte_ones) > 1:
            parts.insert(0, "{_join(_bytes(r)).decode('latin-1')}")
        elif byte_ones:
            parts.insert(0, f"{{r.{byte_ones[0]}.decode('latin-1')}}")
        text = "\\x00".join(parts)  # (an f-string: its parts are joined in C, no call)
        source += [
            f'    m = _match(f"{text}")',
            "    if m is None:",
            "        return _write(_slow(r))" if write else "        return _slow(r)",
            "    g = m.groups()",
        ]
    if "time" in fields:
        source.append("    second, ms = divmod(int(r.start_wall * 1000 // 1), 1000)")
    source += [
        f"    line = _format({', '.join(arguments + computed)})",
        f"    return _write({ending})" if write else f"    return {ending}",
    ]
    names = dict(_NAMESPACE)
    names.update(
        _slow=slow,
        _format="".join(template).format,
        _match=re.compile("\x00".join(patterns)).fullmatch,
        _write=write,
    )
    if len(byte_ones) > 1:
        names["_bytes"] = operator.attrgetter(*byte_ones)
    return _defined("\n".join(source) + "\n", names)


# The fields hooks added, after the configured ones (a line without any pays one test).
def _json_extra(line: str, record: AccessRecord) -> str:
    json = encode_basestring_ascii
    added = "".join(f",{json(name)}:{json(value)}" for name, value in record.extra)
    return line[:-1] + added + "}"


def _ltsv_extra(line: str, record: AccessRecord) -> str:
    return line + "".join(f"\t{name}:{ltsv_escape(value)}" for name, value in record.extra)


def _merged(pieces: list[_Piece]) -> list[_Piece]:
    # Adjacent constants become one, so the generated tuple is as short as it can be.
    merged: list[_Piece] = []
    for is_expression, text in pieces:
        if merged and not is_expression and not merged[-1][0]:
            merged[-1] = (False, merged[-1][1] + text)
        else:
            merged.append((is_expression, text))
    return merged


# LTSV separates fields with TAB and records with newline; a value must carry neither. Backslash
# is escaped so that the escapes can be undone; other control characters and non-ASCII bytes
# become \xXX, as nginx writes them.
_LTSV_ESCAPES: dict[int, str] = {
    **{code: f"\\x{code:02X}" for code in [*range(0x20), *range(0x7F, 0x100)]},
    ord("\\"): "\\\\",
    ord("\t"): "\\t",
    ord("\n"): "\\n",
    ord("\r"): "\\r",
}


def ltsv_escape(value: str) -> str:
    """Escape one LTSV value (see `_LTSV_ESCAPES`)."""
    # Nearly every value is plain printable ASCII: test for that in C before translating.
    if value.isascii() and value.isprintable() and "\\" not in value:
        return value
    return value.translate(_LTSV_ESCAPES)


# --- The fields ---------------------------------------------------------------------------------


def _header(attribute: str) -> str:
    # A request header kept as bytes: latin-1 maps every byte to one character, so decoding
    # never fails; "-" when the request had none.
    return f'(r.{attribute}.decode("latin-1") if r.{attribute} else "-")'


# The fields that are one bytes attribute of the record, by field name: `_header`'s shape,
# which the JSON line writes in a shape of its own (`_json_pieces`).
_HEADER_FIELDS = {
    "method": "method",
    "content_type": "content_type",
    "hostname": "host",
    "referrer": "referrer",
    "useragent": "user_agent",
    "http_x_forwarded_proto": "x_forwarded_proto",
    "x_forwarded_for": "x_forwarded_for",
    "section_io_id": "section_io_id",
    "request_id": "request_id",
    "section_io_tag": "section_io_tag",
}


# Each field: a Python expression over the record `r` giving the value's text ("-" when there is
# none), and whether that text can hold characters that need escaping. Numbers, times and "-"
# never do; anything that came from the network may.
_FIELDS: dict[str, tuple[str, bool]] = {
    "time": ("_time(r)", False),
    "time_taken_ms": ("str(round(r.duration_s * 1000))", False),
    # (The short ones inline, not calls: a line runs every expression once per request.)
    "request": (
        '(f\'{r.method.decode("latin-1")} {r.target.decode("latin-1")} '
        'HTTP/{r.http_version.decode("latin-1")}\' if r.method else "-")',
        True,
    ),
    "method": (_header("method"), True),
    "path": ('(r.target.partition(b"?")[0].decode("latin-1") or "-")', True),
    "status": ('(str(r.status) if r.status else "-")', False),
    "bytes": ("str(r.bytes_sent)", False),
    "response_body_bytes": ("str(r.body_bytes_sent)", False),
    "request_length": ("str(r.bytes_received)", False),  # nginx's $request_length
    "content_type": (_header("content_type"), True),
    "hostname": (_header("host"), True),
    "referrer": (_header("referrer"), True),
    "useragent": (_header("user_agent"), True),
    "http_x_forwarded_proto": (_header("x_forwarded_proto"), True),
    "remote_addr": (
        '(r.true_client_ip.decode("latin-1") if r.true_client_ip else r.peer or "-")',
        True,
    ),
    "x_forwarded_for": (_header("x_forwarded_for"), True),
    "upstream_status": ('(str(r.upstream_status) if r.upstream_status else "-")', False),
    "upstream_addr": ('(r.upstream_addr or "-")', True),
    "upstream_time_ms": (
        '("-" if r.upstream_duration_s < 0 else str(round(r.upstream_duration_s * 1000)))',
        False,
    ),
    "section_io_id": (_header("section_io_id"), True),
    "request_id": (_header("request_id"), True),
    "section_io_tag": (_header("section_io_tag"), True),
    "trace_id": (_header("trace_id"), False),  # lower-case hex, checked when parsed
    "span_id": (_header("span_id"), False),
}


@lru_cache(maxsize=4)
def _second_and_offset(second: int) -> tuple[str, str]:
    # Formatting a timestamp costs more than the rest of a line; requests logged within the
    # same second share the work. The offset is looked up per second, so a DST change shows.
    local = time.localtime(second)
    offset_minutes = local.tm_gmtoff // 60
    sign = "-" if offset_minutes < 0 else "+"
    hours, minutes = divmod(abs(offset_minutes), 60)
    return time.strftime("%Y-%m-%dT%H:%M:%S", local), f"{sign}{hours:02d}:{minutes:02d}"


def _time(record: AccessRecord) -> str:
    # ISO 8601 local time with milliseconds and offset: 2026-11-26T14:41:13.123+00:00.
    second, millisecond = divmod(int(record.start_wall * 1000 // 1), 1000)
    stamp, offset = _second_and_offset(second)
    return f"{stamp}.{millisecond:03d}{offset}"


_NAMESPACE: dict[str, Any] = {
    "_json": encode_basestring_ascii,
    "_ltsv": ltsv_escape,
    "_time": _time,
    "_second_and_offset": _second_and_offset,
    "_dash": {"": "-"}.get,  # an empty value is written "-"
    "_join": b"\x00".join,
    "_json_extra": _json_extra,
    "_ltsv_extra": _ltsv_extra,
}

# One getter per field, unescaped: the same expressions as the formatters, for callers that want
# a single value (and for the tests).
FIELD_GETTERS: dict[str, Callable[[AccessRecord], str]] = {
    name: eval(f"lambda r: {expression}", dict(_NAMESPACE))
    for name, (expression, _) in _FIELDS.items()
}
