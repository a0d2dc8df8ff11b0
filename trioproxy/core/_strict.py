"""Strict HTTP/1.1 head checks on raw bytes, before h11 parses them (pure, no I/O).

h11 is lenient where other parsers in a proxy chain are strict (bare LF, obs-fold, some
control characters, chunk-extension bytes). Two parsers reading one message differently is
request smuggling, so what h11 would let through and a strict parser (llhttp) would reject or
read otherwise, we refuse here, on the very bytes h11 is about to parse.

The rule is the intersection: a head or chunked body passes only if it matches the RFC 9112
grammar *and* both h11 and llhttp (lenient flags off) read it, and read it alike. Beyond
that we are stricter than both on purpose in a few places, each for a reason given where it
is checked: only HTTP/1.0 and 1.1; a valid Host; no PRI method; no Connection option naming
Content-Length, Transfer-Encoding or Host; lengths below 2**63; no Transfer-Encoding in
HTTP/1.0; at most 16 hex digits in a chunk size; chunk-extension values present when "=" is;
and in responses, no CTL in the reason phrase, statuses 100..599 only, no Transfer-Encoding
and no non-zero Content-Length in a 1xx or 204. fuzz/test_strict_properties.py checks all
of this against both parsers. Chunked bodies are checked beside h11 by `_chunked`.

Hot path: a usual head costs one match of a regex for a common subset of the grammar whose
heads pass every check after it too (`COMMON_REQUEST_HEAD`, `COMMON_RESPONSE_HEAD`: framing
fields only in their usual form), no Python loop over its fields; any other head gets the full
check, which alone answers it: one full-match of the grammar, one search that finds the
framing fields (Content-Length, Transfer-Encoding, Host, Connection) and their values, and
Python over those (a 300-byte browser head: 17k instructions the first way, 41k the second);
find_head_end judges new bytes with one ``translate`` and one ``count`` (about 1.5 us for
the same head at once, O(new bytes) when it arrives in pieces), except those of a head it
finds whole when asked not to (``judge_whole=False``): the head reader leaves them to the
grammar, which refuses them too. The slow, line-by-line ``_diagnose`` runs only once a head
has failed, to say why in the log.

Status choices (answers to a client; a malformed *response* becomes a 502 at the call site):
- 400 for anything malformed or ambiguous, as llhttp and nginx do;
- 414 for a request line (with its CRLF) longer than the limit, 431 for too many fields;
- 501 only for a well-formed ``Transfer-Encoding`` that ends in a single ``chunked`` but applies
  a coding before it (``gzip, chunked``): the framing is clear, we just do not implement the
  coding (RFC 9112 6.1 "SHOULD respond with 501"; nginx and h11 answer 501 too). Any other
  Transfer-Encoding leaves the body length undeterminable: 400 (RFC 9112 6.3 rule 4, llhttp).
"""

from __future__ import annotations

import re

from ._errors import readable

# RFC 9110 5.6.2: tchar.
_TCHAR = rb"!#$%&'*+\-.^_`|~0-9A-Za-z"
_TOKEN = rb"[" + _TCHAR + rb"]++"  # possessive: a token never gives bytes back
# RFC 9110 5.5: field-value = *field-content, made of VCHAR, obs-text, SP and HTAB. OWS on
# either side is part of the line. No CTL, no DEL: h11 lets most of those through, llhttp
# does not ("Invalid header value char").
_FIELD_CHARS = rb"[\t\x20-\x7e\x80-\xff]"
# RFC 9112 5: field-line = field-name ":" OWS field-value OWS. A name is a token and meets the
# colon directly (5.1: no whitespace before the colon); a line that starts with SP/HTAB is an
# obs-fold (5.2), which the token at the start of each line already excludes.
_FIELD_LINE = _TOKEN + rb":" + _FIELD_CHARS + rb"*+\r\n"
_FIELDS = rb"(?:" + _FIELD_LINE + rb")*+\r\n"

# RFC 9112 3: request-line = method SP request-target SP HTTP-version, single SPs, CRLF
# endings (2.2). The target is visible ASCII (h11's grammar; llhttp rejects obs-text, HTAB
# and DEL in it) in one of the forms of 3.2, as llhttp tells them apart: origin-form "/...",
# absolute-form with a letters-only scheme, "*", and authority-form only after CONNECT
# (which the engine answers with 405). Only HTTP/1.0 and HTTP/1.1 (2.3): llhttp accepts 0.9
# and 2.0, h11 any 1.x, and each reads such a message differently.
_TARGET_CHARS = rb"[\x21-\x7e]"
_REQUEST_LINE = (
    rb"(?:CONNECT " + _TARGET_CHARS + rb"++|" + _TOKEN + rb" (?:/" + _TARGET_CHARS + rb"*+"
    rb"|[A-Za-z]++://" + _TARGET_CHARS + rb"*+|\*)) HTTP/1\.([01])\r\n"
)
_REQUEST_HEAD = re.compile(_REQUEST_LINE + _FIELDS)
# RFC 9112 4: status-line = HTTP-version SP status-code SP [ reason-phrase ]; both strict
# parsers also take a status line without the SP before an empty reason, and so do we.
# Status codes outside 100..599 are invalid (RFC 9110 15).
_RESPONSE_HEAD = re.compile(
    rb"HTTP/1\.([01]) ([1-5][0-9][0-9])(?: " + _FIELD_CHARS + rb"*)?\r\n" + _FIELDS
)

_FRAMING_FIELD_NAMES = frozenset({b"content-length", b"transfer-encoding", b"host"})
# The fields the checks after the grammar read, each with its raw value (see _framing_fields).
_REQUEST_FRAMING = re.compile(
    rb"\n(?i:(content-length|transfer-encoding|host|connection)):([^\r]*+)"
)
_RESPONSE_FRAMING = re.compile(rb"\n(?i:(content-length|transfer-encoding)):([^\r]*+)")

# Bytes that can never appear in a head: a CR not followed by LF, an LF not preceded by CR
# (RFC 9112 2.2: bare CR/LF line endings are rejected, not tolerated), and CTL/DEL other
# than HTAB (RFC 9110 5.5). A CR at the very end of the bytes seen so far is not judged yet.
_NEVER_IN_HEAD = re.compile(rb"(?<!\r)\n|\r(?=[^\n])|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Every byte value that may stand anywhere in a head: HTAB, SP, VCHAR, obs-text. What
# ``bytes.translate`` leaves after deleting these is CR, LF and the forbidden CTLs.
_HEAD_TEXT = bytes([0x09, *range(0x20, 0x7F), *range(0x80, 0x100)])

_MAX_LENGTH = 2**63 - 1
# RFC 9110 7.2: Host = uri-host [ ":" port ] (RFC 3986 3.2.2); reg-name or an IP literal.
_HOST = re.compile(
    rb"(?:\[[0-9A-Fa-f:.]++\]|(?:[A-Za-z0-9\-._~!$&'()*+,;=]++|%[0-9A-Fa-f]{2})*+)(?::[0-9]*+)?"
)
# RFC 9112 7: transfer-coding = token *( OWS ";" OWS transfer-parameter ), inside a list.
_TRANSFER_CODING = re.compile(
    _TOKEN + rb"(?:[\t ]*;[\t ]*" + _TOKEN + rb"=(?:" + _TOKEN + rb'|"[^"\\\r\n]*"))*'
)

# The common heads, in a subset of the grammar that passes every check after it too, so that
# one match proves such a head valid with no Python loop over its fields (and no second search
# for them); any other head gets the full check, which alone answers it. A field line here
# names no framing field, but for these, each allowed once and in the usual place: one Host
# with a valid value (then, in a request, one Content-Length of at most 18 digits, below
# 2**63), and Connection options keep-alive or close; a response is HTTP/1.1, with one
# Content-Length or one "Transfer-Encoding: chunked", and neither in a 1xx or 204. Each of
# these is what the full check demands of such a field (fuzz and tests/unit check it, over
# generated heads). The match also ends at the head's end: in a head of the grammar, its
# blank line is the first CRLF CRLF.
_OWS = rb"[\t ]*+"
_COMMON_HOST = rb"(?i:host):" + _OWS + rb"(?:" + _HOST.pattern + rb")" + _OWS + rb"\r\n"
_COMMON_LENGTH = rb"(?i:content-length):" + _OWS + rb"[0-9]{1,18}" + _OWS + rb"\r\n"
_COMMON_CHUNKED = rb"(?i:transfer-encoding):" + _OWS + rb"(?i:chunked)" + _OWS + rb"\r\n"
_COMMON_CONNECTION = rb"(?i:connection):" + _OWS + rb"(?i:keep-alive|close)" + _OWS + rb"\r\n"
_NOT_REQUEST_FRAMING = rb"(?!(?i:content-length|transfer-encoding|host|connection):)"
_NOT_RESPONSE_FRAMING = rb"(?!(?i:content-length|transfer-encoding):)"
_OTHER_REQUEST_FIELDS = rb"(?:" + _NOT_REQUEST_FRAMING + _FIELD_LINE + rb"|" + _COMMON_CONNECTION
_OTHER_REQUEST_FIELDS += rb")*+"
_COMMON_REQUEST_FIELDS = _OTHER_REQUEST_FIELDS + _COMMON_HOST + _OTHER_REQUEST_FIELDS
_COMMON_REQUEST_FIELDS += rb"(?:" + _COMMON_LENGTH + _OTHER_REQUEST_FIELDS + rb")?\r\n"
COMMON_REQUEST_HEAD = re.compile(rb"(?!PRI )" + _REQUEST_LINE + _COMMON_REQUEST_FIELDS)
_OTHER_RESPONSE_FIELDS = rb"(?:" + _NOT_RESPONSE_FRAMING + _FIELD_LINE + rb")*+"
_REASON = rb"(?: " + _FIELD_CHARS + rb"*+)?\r\n"
_COMMON_FRAMED = rb"(?:" + _COMMON_LENGTH + rb"|" + _COMMON_CHUNKED + rb")" + _OTHER_RESPONSE_FIELDS
_COMMON_WITH_BODY = rb"(?!204)[2-5][0-9][0-9]" + _REASON + _OTHER_RESPONSE_FIELDS
_COMMON_WITH_BODY += rb"(?:" + _COMMON_FRAMED + rb")?"
_COMMON_NO_BODY = rb"(?:1[0-9][0-9]|204)" + _REASON + _OTHER_RESPONSE_FIELDS
COMMON_RESPONSE_HEAD = re.compile(
    rb"HTTP/1\.1 (?:" + _COMMON_WITH_BODY + rb"|" + _COMMON_NO_BODY + rb")\r\n"
)


class FramingError(ValueError):
    """Bytes a strict parser would reject; ``status`` is the answer to give (400, 414, 431)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def find_head_end(buffer: bytes | bytearray, start: int, *, judge_whole: bool = True) -> int:
    """Index just past the head's terminating blank line, or -1 if it is not complete yet.

    ``start`` is where the previous call stopped looking (0 at first); raises FramingError
    as soon as the bytes so far cannot begin a strictly valid head (e.g. a bare LF).
    Each call looks only at the bytes added since the last one (and the three before, where a
    CRLF CRLF or a CR's partner may straddle the boundary). ``judge_whole=False``: the bytes
    of a head found whole are left to the caller (`judge_head_bytes`, or a grammar check,
    which refuses all that this does).
    """
    index = buffer.find(b"\r\n\r\n", max(0, start - 3))
    if index >= 0 and not judge_whole:
        return index + 4
    stop = len(buffer) if index < 0 else index + 4
    # Re-read a CR left pending at the end of the previous bytes, with its successor now.
    low = start - 1 if start > 0 and buffer[start - 1] == 0x0D else start
    _check_line_bytes(buffer, low, stop, complete=index >= 0)
    return -1 if index < 0 else stop


def judge_head_bytes(buffer: bytes | bytearray, start: int, end: int) -> None:
    """What `find_head_end` (called with ``start``) did not judge of the whole head ending at
    ``end`` (``judge_whole=False``)."""
    low = start - 1 if start > 0 and buffer[start - 1] == 0x0D else start
    _check_line_bytes(buffer, low, end, complete=True)


def _check_line_bytes(buffer: bytes | bytearray, low: int, stop: int, *, complete: bool) -> None:
    """Raise unless every CR, LF and CTL in ``buffer[low:stop]`` is part of a CRLF; a CR as
    the very last byte of incomplete bytes waits for its successor.

    C-speed: delete every byte allowed in a head; what is left must be exactly one CRLF per
    adjacent CRLF pair in the bytes (so no CTL, and no CR or LF on its own).
    """
    rest = buffer[low:stop].translate(None, _HEAD_TEXT)
    if not rest:
        return
    expected = b"\r\n" * buffer.count(b"\r\n", low, stop)
    if not complete and buffer[stop - 1] == 0x0D:
        expected += b"\r"
    if rest != expected:
        bad = _NEVER_IN_HEAD.search(buffer, low, stop)
        raise FramingError(_never_in_head_reason(bad.group() if bad else b"\r"))


def check_request_head(
    head: bytes | bytearray,
    *,
    max_request_line_bytes: int,
    max_header_count: int,
) -> None:
    """Raise FramingError unless ``head`` (request line through the blank line) is strictly
    valid HTTP/1.1 or HTTP/1.0."""
    if (
        COMMON_REQUEST_HEAD.fullmatch(head) is None
        or head.find(b"\n") >= max_request_line_bytes  # (the line with its LF, as below)
        or head.count(b"\n") - 2 > max_header_count
    ):
        _check_request_head_fully(
            head, max_request_line_bytes=max_request_line_bytes, max_header_count=max_header_count
        )


def _check_request_head_fully(
    head: bytes | bytearray,
    *,
    max_request_line_bytes: int,
    max_header_count: int,
) -> None:
    """`check_request_head` for any head: the whole grammar, then the checks after it."""
    # Sizes first, so an oversized head gets the same status whether it arrived at once or
    # byte by byte (_connection counts the same way while the head is incomplete: the
    # request line with its CRLF, as nginx's large_client_header_buffers does).
    line_end = head.find(b"\n")
    if (line_end + 1 if line_end >= 0 else len(head)) > max_request_line_bytes:
        raise FramingError("request line too long", status=414)
    if head.count(b"\n") - 2 > max_header_count:
        raise FramingError(f"more than {max_header_count} header fields", status=431)
    match = _REQUEST_HEAD.fullmatch(head)
    if match is None:
        raise FramingError(_diagnose(head, request=True))
    if head.startswith(b"PRI "):
        # RFC 9113 3.4: the HTTP/2 connection preface. llhttp reads it as one; an h2c-capable
        # next hop would switch protocols on it.
        raise FramingError("PRI method (HTTP/2 preface)")
    http_10 = match.group(1) == b"0"
    fields, connection = _framing_fields(_REQUEST_FRAMING.findall(head))
    content_length, coding = _length_fields(fields)
    host = _single(fields, b"host")
    if host is None:
        if not http_10:
            raise FramingError("HTTP/1.1 request without Host")  # RFC 9112 3.2
    elif _HOST.fullmatch(host) is None:
        raise FramingError(f"invalid Host {readable(host[:40])}")  # RFC 9112 3.2: 400
    if connection:
        _check_connection_options(connection)
    if coding is None:
        return
    if http_10:
        # RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 means the framing is faulty.
        raise FramingError("Transfer-Encoding in an HTTP/1.0 request")
    if content_length is not None:
        # RFC 9112 6.1: "ought to be handled as an error"; llhttp rejects it too.
        raise FramingError("both Content-Length and Transfer-Encoding")
    status = _transfer_coding_status(coding)
    if status:
        raise FramingError(f"unsupported Transfer-Encoding {readable(coding[:40])}", status=status)


def check_response_head(head: bytes | bytearray) -> None:
    """Raise FramingError unless a response head (status line through blank line) is strict."""
    if COMMON_RESPONSE_HEAD.fullmatch(head) is None:
        _check_response_head_fully(head)


def _check_response_head_fully(head: bytes | bytearray) -> None:
    """`check_response_head` for any head: the whole grammar, then the checks after it."""
    match = _RESPONSE_HEAD.fullmatch(head)
    if match is None:
        raise FramingError(_diagnose(head, request=False))
    content_length, coding = _length_fields(_framing_fields(_RESPONSE_FRAMING.findall(head))[0])
    status = match.group(2).decode()  # three digits: compared as text, no int needed
    no_content = status < "200" or status == "204"
    if coding is not None:
        if match.group(1) == b"0":
            raise FramingError("Transfer-Encoding in an HTTP/1.0 response")  # RFC 9112 6.1
        if content_length is not None:
            raise FramingError("both Content-Length and Transfer-Encoding")
        if no_content:
            # RFC 9112 6.1: MUST NOT. h11 and llhttp read no body; the origin may send one.
            raise FramingError(f"Transfer-Encoding in a {status} response")
        if _transfer_coding_status(coding):
            # h11 decodes nothing but chunked; RFC 9112 6.3 rule 4 would read until close,
            # and the origin would likely disagree.
            raise FramingError(f"unsupported Transfer-Encoding {readable(coding[:40])}")
    elif content_length and no_content:
        # RFC 9110 8.6: MUST NOT either. "0" is common and harmless (every reading says
        # empty); any other length could be a body only the origin counts.
        raise FramingError(f"Content-Length {content_length} in a {status} response")


def _framing_fields(
    found: list[tuple[bytes, bytes]],
) -> tuple[dict[bytes, bytes | None], list[bytes]]:
    """The framing fields a `_REQUEST_FRAMING` or `_RESPONSE_FRAMING` ``findall`` found in a
    head that passed the grammar: {lower-cased name: OWS-stripped value, or None if the field
    is repeated}, and the raw values of the Connection fields (lower-cased).

    In such a head every LF ends a line and the next line starts with a field name that meets
    its colon, and no CR stands inside a line: so one search finds exactly the fields of those
    names, and each value runs to the CR of its CRLF.
    """
    fields: dict[bytes, bytes | None] = {}
    connection: list[bytes] = []
    for raw_name, value in found:
        name = raw_name.lower()
        if name == b"connection":
            connection.append(value.lower())
        else:
            fields[name] = None if name in fields else value.strip(b"\t ")
    return fields, connection


def _single(fields: dict[bytes, bytes | None], name: bytes) -> bytes | None:
    """The value of field ``name`` (None if absent); a second one is refused.

    RFC 9112 6.3 lets a recipient collapse equal Content-Length values, but llhttp rejects
    them while h11 collapses even "5, 5" (two readings); a repeated Host or Transfer-Encoding
    is refused outright (RFC 9112 3.2, 6.1).
    """
    if name not in fields:
        return None
    value = fields[name]
    if value is None:
        raise FramingError(f"more than one {name.decode()} field")
    return value


def _length_fields(fields: dict[bytes, bytes | None]) -> tuple[int | None, bytes | None]:
    """Content-Length (None if absent) and the raw Transfer-Encoding value (None if absent)
    of a head that passed the grammar; raises on a repeated or malformed Content-Length."""
    if not fields:
        return None, None
    value = _single(fields, b"content-length")
    content_length = None
    # RFC 9110 8.6: 1*DIGIT (bytes.isdigit: ASCII digits only, and not empty); llhttp errs
    # beyond 2**64-1, we stop at the signed 64-bit range.
    if value is not None and (
        not value.isdigit() or len(value) > 19 or (content_length := int(value)) > _MAX_LENGTH
    ):
        raise FramingError(f"invalid Content-Length {readable(value[:40])}")
    return content_length, _single(fields, b"transfer-encoding")


def _check_connection_options(connection: list[bytes]) -> None:
    """Refuse a Connection field that names a framing or routing field: a proxy removes the
    fields named there (RFC 9110 7.6.1), which would strip the very Content-Length or Host
    this hop framed and routed the message by, and the next hop would read it otherwise."""
    for value in connection:
        for option in value.split(b","):
            if option.strip(b"\t ") in _FRAMING_FIELD_NAMES:
                raise FramingError(f"Connection names {readable(option.strip())}")


def _transfer_coding_status(value: bytes) -> int:
    """0 if ``value`` is exactly one ``chunked``; 501 if it is a valid list ending in the only
    ``chunked``; 400 otherwise (chunked missing, not last, repeated, or list malformed)."""
    codings = [coding.strip(b"\t ").lower() for coding in value.split(b",")]
    if codings == [b"chunked"]:
        return 0
    if codings[-1] != b"chunked" or b"chunked" in codings[:-1]:
        return 400  # RFC 9112 6.3 rule 4 and 7: chunked exactly once, and last
    if not all(_TRANSFER_CODING.fullmatch(coding) for coding in codings[:-1]):
        return 400
    return 501


def _never_in_head_reason(byte: bytes) -> str:
    if byte == b"\n":
        return "bare LF line ending (RFC 9112 2.2)"
    if byte.startswith(b"\r"):
        return "bare CR (RFC 9112 2.2)"
    return f"control character {readable(byte)} in head (RFC 9110 5.5)"


def _diagnose(head: bytes | bytearray, *, request: bool) -> str:
    """Why a head failed the grammar, for the log: the first offending line. Slow path only."""
    bad = _NEVER_IN_HEAD.search(head)
    if bad is not None:
        return _never_in_head_reason(bad.group())
    lines = bytes(head).split(b"\r\n")
    if len(lines) < 3 or lines[-2:] != [b"", b""]:
        return "head does not end with an empty line"
    start_line, fields = lines[0], lines[1:-2]
    why = _request_line_problem(start_line) if request else _status_line_problem(start_line)
    if why:
        return why
    for line in fields:
        if line[:1] in (b" ", b"\t"):
            return "obs-fold continuation line (RFC 9112 5.2)"
        name, colon, _ = line.partition(b":")
        if not colon:
            return f"field line without a colon: {readable(line[:40])}"
        if name != name.rstrip(b" \t"):
            return "whitespace between field name and colon (RFC 9112 5.1)"
        if not re.fullmatch(_TOKEN, name):
            return f"invalid field name {readable(name[:40])}"
    return "invalid field value"


def _request_line_problem(line: bytes) -> str:
    parts = line.split(b" ")
    if len(parts) != 3 or not all(parts):
        return f"malformed request line {readable(line[:60])}"
    method, target, version = parts
    if not re.fullmatch(_TOKEN, method):
        return f"method is not a token: {readable(method[:20])}"
    if not re.fullmatch(_TARGET_CHARS + rb"+", target):
        return "invalid character in request target"
    if method != b"CONNECT" and not re.fullmatch(rb"/.*|[A-Za-z]+://.*|\*", target, re.DOTALL):
        return "request target neither origin-, absolute- nor asterisk-form (RFC 9112 3.2)"
    if version not in (b"HTTP/1.0", b"HTTP/1.1"):
        return f"unsupported version {readable(version[:20])}"
    return ""


def _status_line_problem(line: bytes) -> str:
    if not re.fullmatch(rb"HTTP/1\.[01] .*", line, re.DOTALL):
        return f"unsupported version in status line {readable(line[:40])}"
    if not re.fullmatch(rb"HTTP/1\.[01] [1-5][0-9][0-9](?: .*)?", line, re.DOTALL):
        return f"invalid status code in {readable(line[:40])}"
    return ""
