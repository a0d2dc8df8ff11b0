"""The access-line renderer as it was before its memos were reworked (and LTSV got them): a
frozen copy, the reference the differential test (`test_accesslog_differential`) holds the
new one to. Not to be edited."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import lru_cache
from json.encoder import encode_basestring_ascii
from typing import Any

from trioproxy.core._accesslog import AccessRecord

__all__ = ["make_formatter"]

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


Formatter = Callable[[AccessRecord], str]

MISSING = "-"


def make_formatter(fmt: str, fields: tuple[str, ...] = ACCESS_LOG_FIELDS) -> Formatter:
    """Build the renderer for ``fmt`` ("json" or "ltsv") writing ``fields`` in that order.

    No fields (``()``) means every field, as in the settings' default.

    The renderer is generated code: one function that reads every field inline and joins the
    pieces once. It runs once per request; measured on a 20-field line it takes 3.7 µs (JSON)
    and 4.7 µs (LTSV), against 6.1 µs calling one getter per field and 11 µs with
    ``json.dumps`` of a dict. Only expressions from the fixed `_FIELDS` table go into the
    generated source, never anything from the configuration or the network.
    """
    fields = fields or ACCESS_LOG_FIELDS
    unknown = [name for name in fields if name not in _FIELDS]
    if unknown:
        raise ValueError(f"unknown access-log fields: {', '.join(unknown)}")
    if fmt == "json":
        memos: dict[str, Any] = {}
        return _compile(_json_pieces(fields, memos), "_json_extra", memos)
    if fmt == "ltsv":
        return _compile(_ltsv_pieces(fields), "_ltsv_extra")
    raise ValueError(f"unknown access-log format {fmt!r}; expected 'json' or 'ltsv'")


# A piece of a line: constant text, or a Python expression over the record `r`.
_Piece = tuple[bool, str]  # (is_expression, text)


def _json_pieces(fields: tuple[str, ...], memos: dict[str, Any]) -> list[_Piece]:
    """The JSON line's pieces; the memos their expressions use are added to ``memos``."""
    pieces: list[_Piece] = []
    for index, name in enumerate(fields):
        expression, may_need_escaping = _FIELDS[name]
        pieces.append((False, ("{" if index == 0 else ",") + f'"{name}":'))
        memoized = _json_memoized(name, f"_m{index}", f"_v{index}")
        attribute = _HEADER_FIELDS.get(name)
        if memoized is not None:
            if name != "time":
                memos[f"_m{index}"] = {}
            text, quoted = memoized
            pieces += [(True, text)] if quoted else [(False, '"'), (True, text), (False, '"')]
        elif attribute is not None:
            # Most of them are absent from most requests: "-" is written ready-quoted, not
            # encoded each time.
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


# Memos: most of a line's values repeat from request to request (the method, host, user agent,
# content type, status, sizes, the peer's and the upstream's addresses), and formatting one
# (decode, escape, str) costs a few calls. The JSON line looks each up in a memo of its own,
# inline (no call at all while it is kept), and formats it only when it is new; the time is
# kept for its millisecond (`_time`). Bounded: a memo holds at most _MEMO_ENTRIES values
# (when full it starts over), each kept only if its key and text are at most _MEMO_LENGTH
# long (a longer one is formatted every time): values that never repeat (an attacker's, a
# crawl's targets) cost one lookup more than before, and a memo holds at most ~15 KiB. Each
# formatter has its own: a reload starts afresh. (Request and trace IDs and durations rarely
# repeat: formatted every time.)
_MEMO_ENTRIES = 32
_MEMO_LENGTH = 160


def _keep(memo: dict[Any, str], key: object, text: str, length: int = 0) -> str:
    """``text``, kept in ``memo`` as ``key``'s if both are short (``length``: the key's)."""
    if length <= _MEMO_LENGTH and len(text) <= _MEMO_LENGTH:
        if len(memo) >= _MEMO_ENTRIES:
            memo.clear()
        memo[key] = text
    return text


def _memo_lookup(memo: str, first_key: str, key: str, make: str, length: str = "0") -> str:
    # ``first_key`` is evaluated first (the membership test), and may bind ``key``.
    return f"({memo}[{key}] if {first_key} in {memo} else _keep({memo}, {key}, {make}, {length}))"


def _json_memoized(name: str, memo: str, var: str) -> tuple[str, bool] | None:
    """The JSON line's expression for field ``name`` looked up in ``memo`` (``var``: a name
    it may bind), and whether it gives the value quoted; None for a field formatted afresh."""
    attribute = _HEADER_FIELDS.get(name)
    if name == "time":  # (`_time` keeps the last one, with its millisecond)
        return (
            f"({var}[1] if ({var} := _last_time[0])[0] == r.start_wall * 1000 // 1 else _time(r))",
            False,
        )
    if attribute is not None and name != "request_id":
        value = f"r.{attribute}"
        make = f'_json({value}.decode("latin-1"))'
        lookup = _memo_lookup(memo, value, value, make, f"len({value})")
        return f"({lookup} if {value} else '\"-\"')", True
    if name == "request":
        key = "(r.method, r.target, r.http_version)"
        make = f"_json({_FIELDS[name][0]})"
        lookup = _memo_lookup(memo, f"({var} := {key})", var, make, "len(r.target)")
        return f"({lookup} if r.method else '\"-\"')", True
    if name == "path":
        return _memo_lookup(
            memo, "r.target", "r.target", f"_json({_FIELDS[name][0]})", "len(r.target)"
        ), True
    if name == "remote_addr":  # (a True-Client-IP is rarer, and is formatted afresh)
        peer = _memo_lookup(memo, "r.peer", "r.peer", '_json(r.peer or "-")', "len(r.peer)")
        return f'(_json(r.true_client_ip.decode("latin-1")) if r.true_client_ip else {peer})', True
    if name == "upstream_addr":
        addr = "r.upstream_addr"
        return _memo_lookup(memo, addr, addr, f'_json({addr} or "-")', f"len({addr})"), True
    if name in ("status", "upstream_status"):
        value = f"r.{name}"
        return _memo_lookup(memo, value, value, f'(str({value}) if {value} else "-")'), False
    if name in ("bytes", "response_body_bytes", "request_length"):
        value = {"bytes": "r.bytes_sent", "response_body_bytes": "r.body_bytes_sent"}.get(
            name, "r.bytes_received"
        )
        return _memo_lookup(memo, value, value, f"str({value})"), False
    return None


def _ltsv_pieces(fields: tuple[str, ...]) -> list[_Piece]:
    pieces: list[_Piece] = []
    for index, name in enumerate(fields):
        expression, may_need_escaping = _FIELDS[name]
        pieces.append((False, ("" if index == 0 else "\t") + f"{name}:"))
        pieces.append((True, f"_ltsv({expression})" if may_need_escaping else expression))
    return pieces


def _compile(pieces: list[_Piece], extra: str, memos: dict[str, Any] | None = None) -> Formatter:
    items = [text if is_expression else repr(text) for is_expression, text in _merged(pieces)]
    source = (
        f"def render(r):\n    line = ''.join(({', '.join(items)},))\n"
        f"    return {extra}(line, r) if r.extra else line\n"
    )
    namespace = dict(_NAMESPACE)
    namespace.update(memos or {})
    exec(source, namespace)
    # Taken out of its own globals: left in, function and namespace form a cycle that only a
    # full collection frees, and every reload made one (RSS crept until it ran).
    render: Formatter = namespace.pop("render")
    return render


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


# The last time formatted, with its millisecond (``start_wall * 1000 // 1``, the floor `_time`
# takes): requests logged within one millisecond share it, and the JSON line looks it up
# inline. One tuple, replaced whole: a reader never pairs one's millisecond with another's text.
_last_time: list[tuple[float, str]] = [(-1.0, "")]


def _time(record: AccessRecord) -> str:
    # ISO 8601 local time with milliseconds and offset: 2026-11-26T14:41:13.123+00:00.
    millis = record.start_wall * 1000 // 1
    second, millisecond = divmod(int(millis), 1000)
    stamp, offset = _second_and_offset(second)
    text = f"{stamp}.{millisecond:03d}{offset}"
    _last_time[0] = (millis, text)
    return text


_NAMESPACE: dict[str, Any] = {
    "_json": encode_basestring_ascii,
    "_ltsv": ltsv_escape,
    "_time": _time,
    "_last_time": _last_time,
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
