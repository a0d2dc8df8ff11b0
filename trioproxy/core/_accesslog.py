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

import math
import operator
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
    start, body = record.body_start, record.body_bytes_sent
    # (Nearly always the whole body left: two comparisons, no min or max call.)
    if start < 0 or body > sent_now - start or body < 0:
        written = sent_now - start if start >= 0 else 0
        record.body_bytes_sent = max(0, min(body, written))


Formatter = Callable[[AccessRecord], str]

MISSING = "-"


def make_formatter(fmt: str, fields: tuple[str, ...] = ACCESS_LOG_FIELDS) -> Formatter:
    """Build the renderer for ``fmt`` ("json" or "ltsv") writing ``fields`` in that order.

    No fields (``()``) means every field, as in the settings' default.

    The renderer is generated code: one function that reads every field inline (most through
    a memo, see below) and joins the pieces once. It runs once per request: ~19k instructions
    and 183 bytecodes for the default 24 fields of a benchmark's request, JSON or LTSV, when
    its values were seen before (callgrind; 35k when target and user agent are new every
    time, 33k when the host is; 6.1 µs calling one getter per field and 11 µs with
    ``json.dumps`` of a dict were measured against 3.7 µs for an earlier version). Only
    expressions from the fixed `_FIELDS` table go into the generated source, never anything
    from the configuration or the network.
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
    memos: dict[str, Any] = {}
    pieces = _absorbed(_merged(_pieces(fmt, fields, memos)))
    return _compile(pieces, f"_{fmt}_extra", memos, write)


@dataclass(slots=True)
class _Piece:
    """A piece of a line: constant text, or a Python expression over the record ``r``.

    A memo's piece (``memo`` set) and the time's take in the constant text around them
    (``prefix``, ``suffix``; `_absorbed`), so that the text they keep or look up is one
    piece of the line instead of three."""

    text: str  # the constant, or the expression (a memo's: the text for a new key)
    constant: bool = False
    memo: str = ""  # the memo's name (its get: `_g` for `_m`); "" for none
    key: str = ""  # the memo's key
    length: str = "0"  # the key's length, for the memo's bound
    # An expression used instead of the memo when ``unless`` holds (remote_addr's
    # True-Client-IP), or, without a memo, the constant used when ``unless`` does not hold
    # (a usually empty value's "-").
    unless: str = ""
    instead: str = ""
    prefix: str = ""
    suffix: str = ""
    absorbs: bool = False  # takes in the constants around it
    time: bool = False
    # A memo whose values are few (methods, statuses, hosts, content types), so that the
    # line looks it up by subscript: a key it lacks raises KeyError, and the line is made
    # again the way that keeps new values (`_compile`).
    few: bool = False


def _const(text: str) -> _Piece:
    return _Piece(text, constant=True)


def _pieces(fmt: str, fields: tuple[str, ...], memos: dict[str, Any]) -> list[_Piece]:
    """The line's pieces; the memos their expressions use are added to ``memos``."""
    json = fmt == "json"
    escape = "_json" if json else "_ltsv"
    pieces: list[_Piece] = []
    for index, name in enumerate(fields):
        expression, may_need_escaping = _FIELDS[name]
        if json:
            pieces.append(_const(("{" if index == 0 else ",") + f'"{name}":'))
        else:
            pieces.append(_const(("" if index == 0 else "\t") + f"{name}:"))
        quote = _const('"' if json else "")
        memoized = _memoized(name, escape, json)
        if name == "time":
            pieces += [quote, _Piece("", time=True, absorbs=True), quote]
        elif memoized is not None:
            memo: dict[Any, str] = {}
            memos[f"_m{index}"], memos[f"_g{index}"] = memo, memo.get
            memoized.memo = f"_m{index}"
            pieces += [memoized] if memoized.prefix != '"' else [quote, memoized, quote]
            memoized.prefix = ""
        elif name in _HEADER_FIELDS:  # (the request ID: rarely repeats, so never kept)
            attribute = _HEADER_FIELDS[name]
            dash = "'\"-\"'" if json else '"-"'
            value = f"{escape}(r.{attribute}.decode('latin-1'))"
            pieces.append(_Piece(f"({value} if r.{attribute} else {dash})"))
        elif name in ("trace_id", "span_id"):  # (usually none: "-" and the text around it)
            value = f'r.{name}.decode("latin-1")'
            pieces += [quote, _Piece(value, unless=f"not r.{name}", instead="-", absorbs=True)]
            pieces.append(quote)
        elif may_need_escaping:
            # The C-accelerated JSON string encoder quotes the text and escapes everything
            # outside printable ASCII, so a line is always one line of valid ASCII JSON.
            pieces.append(_Piece(f"{escape}({expression})"))
        else:
            pieces += [quote, _Piece(expression), quote]
    if json:
        pieces.append(_const("}"))
    return pieces


def _merged(pieces: list[_Piece]) -> list[_Piece]:
    # Adjacent constants become one, so the generated tuple is as short as it can be.
    merged: list[_Piece] = []
    for piece in pieces:
        if piece.constant and not piece.text:
            continue
        if merged and piece.constant and merged[-1].constant:
            merged[-1] = _const(merged[-1].text + piece.text)
        else:
            merged.append(piece)
    return merged


def _absorbed(pieces: list[_Piece]) -> list[_Piece]:
    """The constants next to a piece that takes them in, taken in: the constant after it,
    and the one before it unless the piece before took that."""
    result: list[_Piece] = []
    for index, piece in enumerate(pieces):
        if piece.constant:
            if result and result[-1].absorbs and not result[-1].suffix:
                result[-1].suffix = piece.text
            else:
                following = pieces[index + 1] if index + 1 < len(pieces) else None
                if following is not None and (following.memo or following.time):
                    following.prefix = piece.text
                else:
                    result.append(piece)
            continue
        result.append(piece)
    return result


# The time: the text of its second, with the constants around it, looked up once a second
# (`_time_parts`); its millisecond's ".123" from a table: no formatting per request.
_MILLISECONDS = tuple(f".{millisecond:03d}" for millisecond in range(1000))

# Memos: most of a line's values repeat from request to request (the method, host, user agent,
# content type, status, the peer's and the upstream's addresses), and formatting one
# (decode, escape, str) costs a few calls. A line looks each up in a memo of its own, inline
# (one dict.get, no Python call while it is kept), and formats it only when it is new; an
# empty header is kept as its "-". A kept text carries the line's constant text around it
# (the field names, quotes and separators), so a line joins fewer pieces. Bounded: a memo
# holds at most _MEMO_ENTRIES values (when full it starts over), each kept only if its key
# and text (less the constant text) are at most _MEMO_LENGTH long (a longer one is formatted
# every time): values that never repeat (an attacker's, a crawl's targets) cost one lookup
# more than before, and a memo holds at most ~20 KiB. Each formatter has its own: a reload
# starts afresh. (Request and trace IDs, durations and sizes repeat too rarely: formatted
# every time, and str() of a size is fewer opcodes than a lookup.)
_MEMO_ENTRIES = 32
_MEMO_LENGTH = 160
_TIME_ENTRIES = 4  # seconds kept: requests logged late by a second or two still find theirs


def _keep(memo: dict[Any, str], key: object, text: str, length: int = 0, around: int = 0) -> str:
    """``text``, kept in ``memo`` as ``key``'s if both are short (``length``: the key's;
    ``around``: the constant text's in ``text``)."""
    if length <= _MEMO_LENGTH and len(text) - around <= _MEMO_LENGTH:
        if len(memo) >= _MEMO_ENTRIES:
            memo.clear()
        memo[key] = text
    return text


def _time_parts(
    memo: dict[int, tuple[str, str]], second: int, prefix: str, suffix: str
) -> tuple[str, str]:
    """The line's text before and after the millisecond, for ``second``, kept in ``memo``."""
    stamp, offset = _second_and_offset(second)
    if len(memo) >= _TIME_ENTRIES:
        memo.clear()
    parts = memo[second] = (prefix + stamp, offset + suffix)
    return parts


# The header fields whose values are few: looked up by subscript (`_Piece.few`). The
# others (targets, user agents, referrers, addresses, IDs) are often new, and a KeyError
# per line would cost more than the subscript saves.
_FEW_VALUES = frozenset({"method", "content_type", "hostname", "http_x_forwarded_proto"})
_FEW_VALUES |= {"section_io_tag"}


def _memoized(name: str, escape: str, json: bool) -> _Piece | None:
    """The piece for field ``name`` looked up in a memo (its name set by the caller), with
    ``prefix`` '"' if it gives the value unquoted in JSON; None for a field formatted afresh."""
    attribute = _HEADER_FIELDS.get(name)
    dash = "'\"-\"'" if json else '"-"'
    if attribute is not None and name != "request_id":
        value = f"r.{attribute}"
        make = f'({escape}({value}.decode("latin-1")) if {value} else {dash})'
        few = name in _FEW_VALUES
        return _Piece(make, key=value, length=f"len({value})", absorbs=True, few=few)
    if name == "request":  # (method, target, version): read in C
        make = f"{escape}({_FIELDS[name][0]})"
        return _Piece(make, key="_request_of(r)", length="len(r.target)", absorbs=True)
    if name == "path":
        make = f"{escape}({_FIELDS[name][0]})"
        return _Piece(make, key="r.target", length="len(r.target)", absorbs=True)
    if name == "remote_addr":  # (a True-Client-IP is rarer, and is formatted afresh)
        return _Piece(
            f'{escape}(r.peer or "-")',
            key="r.peer",
            length="len(r.peer)",
            unless="r.true_client_ip",
            instead=f'{escape}(r.true_client_ip.decode("latin-1"))',
            absorbs=True,
        )
    if name == "upstream_addr":
        addr = "r.upstream_addr"
        make = f'{escape}({addr} or "-")'
        return _Piece(make, key=addr, length=f"len({addr})", absorbs=True, few=True)
    if name in ("status", "upstream_status"):
        value = f"r.{name}"
        make = f'(str({value}) if {value} else "-")'
        quoted = '"' if json else ""
        return _Piece(make, key=value, prefix=quoted, absorbs=True, few=True)
    return None


def _expression(piece: _Piece, subscript: bool = False) -> str:
    """The Python expression (or constant) that gives ``piece``'s text in the line; a memo
    of few values by subscript if ``subscript``."""
    if piece.constant:
        return repr(piece.text)
    if piece.time:
        return "_head, _MILLISECONDS[ms % 1000], _tail"
    before = f"{piece.prefix!r} + " if piece.prefix else ""
    after = f" + {piece.suffix!r}" if piece.suffix else ""
    if piece.memo:
        get, key = "_g" + piece.memo[2:], piece.key
        if subscript and piece.few and not piece.unless:
            return f"{piece.memo}[{key}]"
        around = len(piece.prefix) + len(piece.suffix)
        make = f"{before}{piece.text}{after}, {piece.length}, {around}"
        # (A kept text is never empty: "or" falls through only when the key is new.)
        lookup = f"({get}({key}) or _keep({piece.memo}, {key}, {make}))"
        if piece.unless:
            return f"({before}{piece.instead}{after} if {piece.unless} else {lookup})"
        return lookup
    if piece.unless:  # (no prefix: only a memo or the time takes one)
        return f"({piece.instead + piece.suffix!r} if {piece.unless} else {piece.text}{after})"
    return piece.text


def _compile(
    pieces: list[_Piece],
    extra: str,
    memos: dict[str, Any],
    write: Callable[[str], object] | None,
) -> Callable[[AccessRecord], Any]:
    items = ", ".join(_expression(piece) for piece in pieces)
    line = f"''.join(({items},))"
    # The line as nearly every request makes it: the memos of few values (and the time's
    # second) by subscript. A KeyError is a value a memo lacks: the line is made again the
    # way that keeps it (never from the write, which is outside the try).
    fast = f"''.join(({', '.join(_expression(piece, True) for piece in pieces)},))"
    ms = time = ""
    if any(piece.time for piece in pieces):
        (piece,) = [piece for piece in pieces if piece.time]
        memo: dict[int, tuple[str, str]] = {}
        memos["_tm"], memos["_tg"] = memo, memo.get
        parts = f"_time_parts(_tm, ms // 1000, {piece.prefix!r}, {piece.suffix!r})"
        ms = "    ms = _floor(r.start_wall * 1000)\n"  # (int(x // 1): more bytecodes)
        time = f"_head, _tail = _tg(ms // 1000) or {parts}"
        fast = f"_head, _tail = _tm[ms // 1000]; line = {fast}"
    else:
        fast = f"line = {fast}"
    done = "return _write({})" if write else "return {}"
    source = "".join(
        [
            "def render(r):\n",
            ms,
            "    if not r.extra:\n",
            "        try:\n",
            f"            {fast}\n",
            "        except KeyError:\n",
            f"            {time}\n" if time else "",
            f"            line = {line}\n",
            f"        {done.format('line')}\n",
            f"    {time}\n" if time else "",
            f"    {done.format(f'{extra}({line}, r)')}\n",  # (fields added: rare)
        ]
    )
    namespace = dict(_NAMESPACE)
    namespace.update(memos, _write=write)
    exec(source, namespace)
    # Taken out of its own globals: left in, function and namespace form a cycle that only a
    # full collection frees, and every reload made one (RSS crept until it ran).
    render: Callable[[AccessRecord], Any] = namespace.pop("render")
    return render


# The fields hooks added, after the configured ones (a line without any pays one test).
def _json_extra(line: str, record: AccessRecord) -> str:
    json = encode_basestring_ascii
    added = "".join(f",{json(name)}:{json(value)}" for name, value in record.extra)
    return line[:-1] + added + "}"


def _ltsv_extra(line: str, record: AccessRecord) -> str:
    return line + "".join(f"\t{name}:{ltsv_escape(value)}" for name, value in record.extra)


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
# which the line writes through a memo (`_memoized`).
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
    # (float.__round__ is what round() calls, without looking it up and binding it each
    # time; "1000.0" makes a float of an int duration too.)
    "time_taken_ms": ("str(_round(r.duration_s * 1000.0))", False),
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
        '("-" if r.upstream_duration_s < 0 else str(_round(r.upstream_duration_s * 1000.0)))',
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
    "_time_parts": _time_parts,
    "_floor": math.floor,
    "_round": float.__round__,
    "_MILLISECONDS": _MILLISECONDS,
    "_request_of": operator.attrgetter("method", "target", "http_version"),
    "_keep": _keep,
    "_json_extra": _json_extra,
    "_ltsv_extra": _ltsv_extra,
}

# One getter per field, unescaped: the same expressions as the formatters, for callers that want
# a single value (and for the tests).
FIELD_GETTERS: dict[str, Callable[[AccessRecord], str]] = {
    name: eval(f"lambda r: {expression}", dict(_NAMESPACE))
    for name, (expression, _) in _FIELDS.items()
}
