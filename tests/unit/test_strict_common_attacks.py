"""Attacks on the common-head fast path (`_strict.COMMON_REQUEST_HEAD` /
`COMMON_RESPONSE_HEAD`, `_headreader.whole_request_head` / `whole_response_head`), head by
head: smuggling and splitting spellings of the framing fields, bytes the grammar refuses,
`re` pitfalls, heads at the size limits, and hostile heads timed. Each is answered as the
former path answers it: `_check_*_fully` in a reader (what main ran). The fast path may only
ever vouch for a head that path accepts, ending where it ends; any answer, status and
message included, must be the same with the fast path as without it.

(`test_strict_common.py` checks the same over generated heads; these are the named cases.)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from unittest import mock

import pytest

from trioproxy.core import _headreader, _strict
from trioproxy.core._headreader import (
    FixedLimits,
    RequestHeadReader,
    ResponseHeadReader,
    whole_request_head,
    whole_response_head,
)
from trioproxy.core._strict import FramingError

LIMITS = FixedLimits(65536, 8192, 100)
# What may follow a head in the same read: a body, a pipelined request (valid, or one a
# strict parser refuses), stray line ends and bytes no head may hold.
TAILS = [
    b"",
    b"hello",
    b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /2 HTTP/1.1\nHost: x\n\n",
    b"\r\n\r\n",
    b"\n\x00\r\xff",
    b"0\r\n\r\n",
]


def _request(line: bytes, *fields: bytes) -> bytes:
    return line + b"\r\n" + b"".join(f + b"\r\n" for f in fields) + b"\r\n"


def _get(*fields: bytes) -> bytes:
    return _request(b"GET / HTTP/1.1", *fields)


def _response(line: bytes, *fields: bytes) -> bytes:
    return _request(line, *fields)


# (id, head, expected answer of the former path: None for accepted, else its status)
REQUESTS: list[tuple[str, bytes, int | None]] = [
    ("plain", _get(b"Host: x"), None),
    ("host-lower", _get(b"host: x"), None),
    ("host-upper", _get(b"HOST: x"), None),
    ("host-empty", _get(b"Host:"), None),
    ("host-ows-only", _get(b"Host: \t "), None),
    ("host-port", _get(b"Host: x:8080"), None),
    ("host-empty-port", _get(b"Host: x:"), None),
    ("host-only-port", _get(b"Host: :80"), None),
    ("host-port-letters", _get(b"Host: x:8o"), 400),
    ("host-two-colons", _get(b"Host: x:80:80"), 400),
    ("host-userinfo", _get(b"Host: user@x"), 400),
    ("host-userinfo-pw", _get(b"Host: u:p@x:80"), 400),
    ("host-ipv6", _get(b"Host: [::1]:8080"), None),
    ("host-ipv6-unclosed", _get(b"Host: [::1"), 400),
    ("host-ipv6-zone", _get(b"Host: [fe80::1%25eth0]"), 400),
    ("host-ipvfuture", _get(b"Host: [v1.x]"), 400),
    ("host-pct", _get(b"Host: a%41b"), None),
    ("host-pct-short", _get(b"Host: a%4"), 400),
    ("host-slash", _get(b"Host: x/y"), 400),
    ("host-space-inside", _get(b"Host: a b"), 400),
    ("host-high-byte", _get(b"Host: caf\xc3\xa9"), 400),
    ("host-nbsp", _get(b"Host: x\xa0"), 400),
    ("host-nel", _get(b"Host: x\x85"), 400),
    ("host-vt", _get(b"Host: x\x0b"), 400),
    ("host-ff-ows", _get(b"Host:\x0cx"), 400),
    ("host-nul", _get(b"Host: x\x00"), 400),
    ("host-twice", _get(b"Host: x", b"Host: x"), 400),
    ("host-twice-case", _get(b"Host: x", b"hOST: y"), 400),
    ("host-missing-11", _get(b"X: y"), 400),
    ("host-missing-10", _request(b"GET / HTTP/1.0", b"X: y"), None),
    ("host-10", _request(b"GET / HTTP/1.0", b"Host: x"), None),
    ("host-lookalike-s", _get(b"Hosts: x"), 400),
    ("host-long-s", _get(b"Ho\xc5\xbft: x"), 400),
    ("host-space-before-colon", _get(b"Host : x"), 400),
    ("host-tab-before-colon", _get(b"Host\t: x"), 400),
    ("host-obs-fold", _get(b"Host: x", b" y"), 400),
    ("host-obs-fold-tab", _get(b"Host: x", b"\ty"), 400),
    ("host-leading-space-name", _get(b" Host: x"), 400),
    ("host-absolute-form", _request(b"GET http://a/ HTTP/1.1", b"Host: b"), None),
    ("host-absolute-userinfo", _request(b"GET http://u@a/ HTTP/1.1", b"Host: a"), None),
    ("cl", _get(b"Host: x", b"Content-Length: 5"), None),
    ("cl-before-host", _get(b"Content-Length: 5", b"Host: x"), None),
    ("cl-zero", _get(b"Host: x", b"Content-Length: 0"), None),
    ("cl-leading-zeros", _get(b"Host: x", b"Content-Length: 0005"), None),
    ("cl-18-digits", _get(b"Host: x", b"Content-Length: 999999999999999999"), None),
    ("cl-19-digits-max", _get(b"Host: x", b"Content-Length: 9223372036854775807"), None),
    ("cl-19-digits-over", _get(b"Host: x", b"Content-Length: 9223372036854775808"), 400),
    ("cl-19-zeros", _get(b"Host: x", b"Content-Length: 0000000000000000005"), None),
    ("cl-20-digits", _get(b"Host: x", b"Content-Length: 00000000000000000005"), 400),
    ("cl-plus", _get(b"Host: x", b"Content-Length: +5"), 400),
    ("cl-minus", _get(b"Host: x", b"Content-Length: -5"), 400),
    ("cl-empty", _get(b"Host: x", b"Content-Length:"), 400),
    ("cl-spaces", _get(b"Host: x", b"Content-Length: \t5 \t"), None),
    ("cl-inner-space", _get(b"Host: x", b"Content-Length: 5 5"), 400),
    ("cl-comma", _get(b"Host: x", b"Content-Length: 5,5"), 400),
    ("cl-comma-space", _get(b"Host: x", b"Content-Length: 5, 5"), 400),
    ("cl-hex", _get(b"Host: x", b"Content-Length: 0x5"), 400),
    ("cl-underscore", _get(b"Host: x", b"Content-Length: 1_0"), 400),
    ("cl-arabic-digit", _get(b"Host: x", b"Content-Length: \xd9\xa1"), 400),
    ("cl-fullwidth-digit", _get(b"Host: x", b"Content-Length: \xef\xbc\x95"), 400),
    ("cl-superscript", _get(b"Host: x", b"Content-Length: \xc2\xb2"), 400),
    ("cl-vt", _get(b"Host: x", b"Content-Length: 5\x0b"), 400),
    ("cl-nul", _get(b"Host: x", b"Content-Length: 5\x00"), 400),
    ("cl-twice-same", _get(b"Host: x", b"Content-Length: 5", b"Content-Length: 5"), 400),
    ("cl-twice-case", _get(b"Host: x", b"Content-Length: 5", b"content-length: 6"), 400),
    ("cl-twice-around-host", _get(b"Content-Length: 5", b"Host: x", b"Content-Length: 5"), 400),
    ("cl-space-before-colon", _get(b"Host: x", b"Content-Length : 5"), 400),
    ("cl-lookalike", _get(b"Host: x", b"Content-Lengthx: 5"), None),
    ("cl-obs-fold", _get(b"Host: x", b"Content-Length: 5", b" 6"), 400),
    (
        "cl-bare-cr-hides-te",
        _get(b"Host: x", b"Content-Length: 3\rTransfer-Encoding: chunked"),
        400,
    ),
    (
        "cl-bare-lf-hides-te",
        _get(b"Host: x", b"Content-Length: 3\nTransfer-Encoding: chunked"),
        400,
    ),
    ("te-chunked", _get(b"Host: x", b"Transfer-Encoding: chunked"), None),
    ("te-upper", _get(b"Host: x", b"TRANSFER-ENCODING: CHUNKED"), None),
    ("te-and-cl", _get(b"Host: x", b"Content-Length: 5", b"Transfer-Encoding: chunked"), 400),
    ("te-gzip-chunked", _get(b"Host: x", b"Transfer-Encoding: gzip, chunked"), 501),
    ("te-chunked-gzip", _get(b"Host: x", b"Transfer-Encoding: chunked, gzip"), 400),
    (
        "te-twice",
        _get(b"Host: x", b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"),
        400,
    ),
    ("te-vt", _get(b"Host: x", b"Transfer-Encoding: chunked\x0b"), 400),
    ("te-10", _request(b"POST / HTTP/1.0", b"Host: x", b"Transfer-Encoding: chunked"), 400),
    ("te-space-before-colon", _get(b"Host: x", b"Transfer-Encoding : chunked"), 400),
    ("conn-close", _get(b"Host: x", b"Connection: close"), None),
    ("conn-keep-alive-case", _get(b"Connection: Keep-Alive", b"Host: x"), None),
    ("conn-twice", _get(b"Connection: close", b"Host: x", b"Connection: keep-alive"), None),
    ("conn-list", _get(b"Host: x", b"Connection: keep-alive, upgrade"), None),
    ("conn-names-host", _get(b"Host: x", b"Connection: close, Host"), 400),
    ("conn-names-cl", _get(b"Host: x", b"Content-Length: 1", b"Connection: content-length"), 400),
    ("conn-names-te", _get(b"Host: x", b"Connection: x,\tTransfer-Encoding "), 400),
    ("conn-close-nbsp", _get(b"Host: x", b"Connection: close\xa0"), None),
    ("conn-empty", _get(b"Host: x", b"Connection:"), None),
    ("pri", _request(b"PRI * HTTP/1.1", b"Host: x"), 400),
    ("pri-slash", _request(b"PRI / HTTP/1.1", b"Host: x"), 400),
    ("prix", _request(b"PRIX / HTTP/1.1", b"Host: x"), None),
    ("pri-lower", _request(b"pri * HTTP/1.1", b"Host: x"), None),
    ("http-10", _request(b"GET / HTTP/1.0", b"Host: x", b"Connection: keep-alive"), None),
    ("http-12", _request(b"GET / HTTP/1.2", b"Host: x"), 400),
    ("http-09", _request(b"GET / HTTP/0.9", b"Host: x"), 400),
    ("http-lower", _request(b"GET / http/1.1", b"Host: x"), 400),
    ("head", _request(b"HEAD / HTTP/1.1", b"Host: x"), None),
    ("options-star", _request(b"OPTIONS * HTTP/1.1", b"Host: x"), None),
    ("connect", _request(b"CONNECT x:443 HTTP/1.1", b"Host: x:443"), None),
    ("authority-not-connect", _request(b"GET x:443 HTTP/1.1", b"Host: x"), 400),
    ("absolute-form", _request(b"GET https://x/y?z HTTP/1.1", b"Host: x"), None),
    ("target-high-byte", _request(b"GET /\x80 HTTP/1.1", b"Host: x"), 400),
    ("target-tab", _request(b"GET /\t HTTP/1.1", b"Host: x"), 400),
    ("target-del", _request(b"GET /\x7f HTTP/1.1", b"Host: x"), 400),
    ("two-spaces", _request(b"GET  / HTTP/1.1", b"Host: x"), 400),
    ("trailing-space", _request(b"GET / HTTP/1.1 ", b"Host: x"), 400),
    ("method-high-byte", _request(b"G\xc3\x89T / HTTP/1.1", b"Host: x"), 400),
    ("value-high-bytes", _get(b"Host: x", b"X: \x80\xff caf\xc3\xa9"), None),
    ("value-tab", _get(b"Host: x", b"X:\tv\t"), None),
    ("value-nul", _get(b"Host: x", b"X: a\x00b"), 400),
    ("value-del", _get(b"Host: x", b"X: \x7f"), 400),
    ("value-esc", _get(b"Host: x", b"X: \x1b[0m"), 400),
    ("value-bare-cr", _get(b"Host: x", b"X: a\rb"), 400),
    ("value-bare-lf", _get(b"Host: x", b"X: a\nb"), 400),
    ("name-high-byte", _get(b"Host: x", b"X\xff: v"), 400),
    ("name-empty", _get(b"Host: x", b": v"), 400),
    ("no-colon", _get(b"Host: x", b"X"), 400),
    ("bare-lf-ending", b"GET / HTTP/1.1\r\nHost: x\r\n\n", 400),
    ("lf-crlf-ending", b"GET / HTTP/1.1\r\nHost: x\n\r\n", 400),
    ("bare-lf-line", b"GET / HTTP/1.1\nHost: x\r\n\r\n", 400),
    ("cr-cr-lf", b"GET / HTTP/1.1\r\nHost: x\r\r\n\r\n", 400),
    ("leading-crlf", b"\r\n" + _get(b"Host: x"), None),
]

RESPONSES: list[tuple[str, bytes, int | None]] = [
    ("ok", _response(b"HTTP/1.1 200 OK", b"Content-Length: 5"), None),
    ("no-reason", _response(b"HTTP/1.1 200", b"Content-Length: 5"), None),
    ("empty-reason", _response(b"HTTP/1.1 200 ", b"Content-Length: 5"), None),
    ("reason-high-bytes", _response(b"HTTP/1.1 200 caf\xc3\xa9\xff"), None),
    ("reason-tab", _response(b"HTTP/1.1 200 O\tK"), None),
    ("reason-ctl", _response(b"HTTP/1.1 200 O\x01K"), 400),
    ("reason-bare-cr", _response(b"HTTP/1.1 200 O\rK"), 400),
    ("read-until-close", _response(b"HTTP/1.1 200 OK", b"Server: x"), None),
    ("chunked", _response(b"HTTP/1.1 200 OK", b"Transfer-Encoding: chunked"), None),
    ("chunked-case", _response(b"HTTP/1.1 200 OK", b"transfer-encoding:\tChunked\t"), None),
    ("chunked-vt", _response(b"HTTP/1.1 200 OK", b"Transfer-Encoding: chunked\x0b"), 400),
    (
        "chunked-and-cl",
        _response(b"HTTP/1.1 200 OK", b"Transfer-Encoding: chunked", b"Content-Length: 5"),
        400,
    ),
    (
        "cl-and-chunked",
        _response(b"HTTP/1.1 200 OK", b"Content-Length: 5", b"Transfer-Encoding: chunked"),
        400,
    ),
    ("te-gzip", _response(b"HTTP/1.1 200 OK", b"Transfer-Encoding: gzip"), 400),
    ("te-gzip-chunked", _response(b"HTTP/1.1 200 OK", b"Transfer-Encoding: gzip, chunked"), 400),
    (
        "te-twice",
        _response(b"HTTP/1.1 200 OK", b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"),
        400,
    ),
    ("te-10", _response(b"HTTP/1.0 200 OK", b"Transfer-Encoding: chunked"), 400),
    ("cl-twice", _response(b"HTTP/1.1 200 OK", b"Content-Length: 5", b"Content-Length: 5"), 400),
    ("cl-comma", _response(b"HTTP/1.1 200 OK", b"Content-Length: 5, 5"), 400),
    ("cl-plus", _response(b"HTTP/1.1 200 OK", b"Content-Length: +5"), 400),
    ("cl-leading-zeros", _response(b"HTTP/1.1 200 OK", b"Content-Length: 0005"), None),
    ("cl-19-digits", _response(b"HTTP/1.1 200 OK", b"Content-Length: 1234567890123456789"), None),
    ("cl-over", _response(b"HTTP/1.1 200 OK", b"Content-Length: 9223372036854775808"), 400),
    ("cl-arabic-digit", _response(b"HTTP/1.1 200 OK", b"Content-Length: \xd9\xa1"), 400),
    ("cl-space-before-colon", _response(b"HTTP/1.1 200 OK", b"Content-Length : 5"), 400),
    ("cl-obs-fold", _response(b"HTTP/1.1 200 OK", b"Content-Length: 5", b" 6"), 400),
    (
        "cl-bare-cr-hides-te",
        _response(b"HTTP/1.1 200 OK", b"Content-Length: 3\rTransfer-Encoding: chunked"),
        400,
    ),
    ("100", _response(b"HTTP/1.1 100 Continue"), None),
    (
        "101",
        _response(b"HTTP/1.1 101 Switching Protocols", b"Upgrade: x", b"Connection: upgrade"),
        None,
    ),
    ("103", _response(b"HTTP/1.1 103 Early Hints", b"Link: </a>"), None),
    ("1xx-cl-zero", _response(b"HTTP/1.1 100 Continue", b"Content-Length: 0"), None),
    ("1xx-cl", _response(b"HTTP/1.1 100 Continue", b"Content-Length: 5"), 400),
    ("1xx-chunked", _response(b"HTTP/1.1 103 X", b"Transfer-Encoding: chunked"), 400),
    ("204", _response(b"HTTP/1.1 204 No Content", b"Server: x"), None),
    ("204-cl-zero", _response(b"HTTP/1.1 204 No Content", b"Content-Length: 0"), None),
    ("204-cl", _response(b"HTTP/1.1 204 No Content", b"Content-Length: 5"), 400),
    ("204-chunked", _response(b"HTTP/1.1 204 No Content", b"Transfer-Encoding: chunked"), 400),
    ("2040", _response(b"HTTP/1.1 2040 X", b"Content-Length: 5"), 400),
    ("205-cl", _response(b"HTTP/1.1 205 Reset", b"Content-Length: 5"), None),
    ("304-cl", _response(b"HTTP/1.1 304 Not Modified", b"Content-Length: 5"), None),
    ("304-chunked", _response(b"HTTP/1.1 304 Not Modified", b"Transfer-Encoding: chunked"), None),
    ("599", _response(b"HTTP/1.1 599 X"), None),
    ("600", _response(b"HTTP/1.1 600 X"), 400),
    ("099", _response(b"HTTP/1.1 099 X"), 400),
    ("http-10", _response(b"HTTP/1.0 200 OK", b"Content-Length: 5"), None),
    ("http-12", _response(b"HTTP/1.2 200 OK", b"Content-Length: 5"), 400),
    ("bare-lf", b"HTTP/1.1 200 OK\nContent-Length: 5\r\n\r\n", 400),
    ("bare-lf-ending", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\n", 400),
    ("value-nul", _response(b"HTTP/1.1 200 OK", b"Set-Cookie: a\x00b"), 400),
    ("split-crlf-in-value", b"HTTP/1.1 200 OK\r\nX: a\r\n\r\nHTTP/1.1 200 OK\r\n\r\n", None),
]


def _sizes(head: bytes) -> Iterator[FixedLimits]:
    """The default limits, and each limit exactly at this head's size and one below it."""
    line = head.find(b"\n") + 1  # the line with its LF, as the checks count it
    count = head.count(b"\n") - 2
    yield LIMITS
    for size in (len(head), len(head) - 1):
        yield FixedLimits(size, 8192, 100)
    for size in (line, line - 1):
        yield FixedLimits(65536, size, 100)
    for size in (count, count - 1):
        yield FixedLimits(65536, 8192, size)


def _full_request(
    head: bytes | bytearray, *, max_request_line_bytes: int, max_header_count: int
) -> None:
    _strict._check_request_head_fully(
        head, max_request_line_bytes=max_request_line_bytes, max_header_count=max_header_count
    )


def _reader_answer(reader: RequestHeadReader | ResponseHeadReader) -> int | tuple[int, str]:
    try:
        return reader.head_end()
    except FramingError as refused:
        return refused.status, str(refused)


def _former_request_answer(data: bytes, limits: FixedLimits) -> int | tuple[int, str]:
    """What main answered: a reader that runs the full check only."""
    with mock.patch.object(_headreader, "check_request_head", _full_request):
        return _reader_answer(RequestHeadReader(bytearray(data), limits))


def _request_answer(data: bytes, limits: FixedLimits) -> int | tuple[int, str]:
    """What the loop answers now (`engine._connection.serve_connection`, `_read_request`): the
    fast path, then the reader (whose check tries the fast match too)."""
    if whole_request_head(data, limits):
        return data.find(b"\r\n\r\n") + 4  # (no reader: h11 reads to the first blank line)
    return _reader_answer(RequestHeadReader(bytearray(data), limits))


def _former_response_answer(data: bytes, limits: FixedLimits) -> int | tuple[int, str]:
    with mock.patch.object(_headreader, "check_response_head", _strict._check_response_head_fully):
        return _reader_answer(ResponseHeadReader(bytearray(data), limits))


def _response_answer(data: bytes, limits: FixedLimits) -> int | tuple[int, str]:
    """As `engine._response.read_response_head` answers the first bytes."""
    end = whole_response_head(data, limits)
    return end if end >= 0 else _reader_answer(ResponseHeadReader(bytearray(data), limits))


def _status(answer: int | tuple[int, str]) -> int | None:
    return None if isinstance(answer, int) else answer[0]


@pytest.mark.parametrize(("name", "head", "status"), REQUESTS, ids=[r[0] for r in REQUESTS])
def test_a_request_head_is_answered_as_before(name: str, head: bytes, status: int | None) -> None:
    assert _status(_former_request_answer(head, LIMITS)) == status  # (the row says what it is)
    for limits in _sizes(head):
        for tail in TAILS:
            data = head + tail
            former = _former_request_answer(data, limits)
            assert _request_answer(data, limits) == former, (limits, tail)
            if whole_request_head(data, limits):
                assert former == len(head)  # vouched for: accepted, at its own end


@pytest.mark.parametrize(("name", "head", "status"), REQUESTS, ids=[r[0] for r in REQUESTS])
def test_a_request_head_checked_whole_gets_the_full_checks_answer(
    name: str, head: bytes, status: int | None
) -> None:
    for limits in _sizes(head):
        sizes = {
            "max_request_line_bytes": limits.max_request_line_bytes,
            "max_header_count": limits.max_header_count,
        }
        for whole in (head, bytearray(head)):
            try:
                _full_request(whole, **sizes)
            except FramingError as refused:
                with pytest.raises(FramingError) as caught:
                    _strict.check_request_head(whole, **sizes)
                assert (caught.value.status, str(caught.value)) == (refused.status, str(refused))
            else:
                _strict.check_request_head(whole, **sizes)


@pytest.mark.parametrize(("name", "head", "status"), RESPONSES, ids=[r[0] for r in RESPONSES])
def test_a_response_head_is_answered_as_before(name: str, head: bytes, status: int | None) -> None:
    assert _status(_former_response_answer(head, LIMITS)) == status
    for size in (65536, len(head), len(head) - 1):
        limits = FixedLimits(size)
        for tail in TAILS:
            data = head + tail
            former = _former_response_answer(data, limits)
            assert _response_answer(data, limits) == former, (size, tail)
            try:
                _strict._check_response_head_fully(head)
            except FramingError as refused:
                with pytest.raises(FramingError) as caught:
                    _strict.check_response_head(head)
                assert (caught.value.status, str(caught.value)) == (refused.status, str(refused))
            else:
                _strict.check_response_head(head)


def test_the_first_blank_line_ends_a_vouched_head_however_many_follow() -> None:
    # A second head in the same read (pipelining, or a split response): the match ends at
    # the first one's blank line, never at a later one.
    first = _get(b"Host: x", b"Content-Length: 0")
    data = first + _get(b"Host: x", b"Content-Length: 99")
    assert whole_request_head(data, LIMITS)
    assert _former_request_answer(data, LIMITS) == len(first)
    response = _response(b"HTTP/1.1 200 OK", b"Content-Length: 0")
    split = response + _response(b"HTTP/1.1 200 OK", b"Content-Length: 99") + b"x" * 99
    assert whole_response_head(split, LIMITS) == len(response)
    early = _response(b"HTTP/1.1 103 Early Hints", b"Link: </a>")
    assert whole_response_head(early + response, LIMITS) == len(early)


def test_the_patterns_are_bytes_and_read_only_ascii_digits_and_letters() -> None:
    # A str pattern would take Unicode digits in \d or [0-9]-like classes and fold case
    # beyond ASCII; bytes patterns cannot, and the values below stay outside the subset.
    assert isinstance(_strict.COMMON_REQUEST_HEAD.pattern, bytes)
    assert isinstance(_strict.COMMON_RESPONSE_HEAD.pattern, bytes)
    for value in (b"\xd9\xa1", b"\xef\xbc\x95", b"5\n", b"\xc2\xb2"):
        assert not whole_request_head(_get(b"Host: x", b"Content-Length: " + value), LIMITS)
    # No "$" that would match before a final LF: a whole head checked with one more byte
    # is refused, as the full check refuses it.
    head = _get(b"Host: x", b"Content-Length: 5")
    for extra in (b"\n", b"\r", b"\r\n", b"x"):
        assert _strict.COMMON_REQUEST_HEAD.fullmatch(head + extra) is None
        with pytest.raises(FramingError):
            _strict.check_request_head(head + extra, max_request_line_bytes=99, max_header_count=9)
    # The case-insensitive groups reach no further than the names and option words.
    assert not whole_request_head(_get(b"Host: x", b"Connection: CLOSE, HOST"), LIMITS)
    assert whole_response_head(_response(b"HTTP/1.1 200 OK", b"X-Chunked: CHUNKED"), LIMITS) > 0


# Heads built to make a backtracking matcher go quadratic or worse: long runs the possessive
# quantifiers must not give back, each ending in a byte that fails the match late.
_HOSTILE = 1 << 18  # 256 KiB, four times the usual receive


def _hostile_heads() -> Iterator[tuple[str, bytes]]:
    n = _HOSTILE
    yield "many-fields-no-host", _request(b"GET / HTTP/1.1", *[b"a:"] * (n // 4))
    yield (
        "many-connection-no-host",
        _request(b"GET / HTTP/1.1", *[b"Connection: close"] * (n // 19)),
    )
    yield "many-hosts", _request(b"GET / HTTP/1.1", *[b"Host: x"] * (n // 9))
    yield "cl-lookalikes", _get(b"Host: x", *[b"Content-Lengthx: 1"] * (n // 20))
    yield (
        "fields-then-second-cl",
        _get(b"Host: x", b"Content-Length: 1", *[b"a:b"] * (n // 5), b"Content-Length: 1"),
    )
    yield "host-pct-run", _get(b"Host: " + b"%41" * (n // 3) + b"%4")
    yield "host-reg-run", _get(b"Host: " + b"a" * n + b"@")
    yield "host-ipv6-run", _get(b"Host: [" + b":" * n)
    yield "host-ows-runs", _get(b"Host:" + b" \t" * (n // 2) + b"x" + b" \t" * (n // 2) + b"y")
    yield "cl-ows-runs", _get(b"Host: x", b"Content-Length:" + b" " * n + b"5" + b" " * n + b"x")
    yield "cl-digits-run", _get(b"Host: x", b"Content-Length: " + b"1" * n)
    yield "scheme-run", _request(b"GET " + b"a" * n + b" HTTP/1.1", b"Host: x")
    yield "target-run", _request(b"GET /" + b"a" * n + b" HTTP/1.1", b"Host: x")
    yield "no-blank-line", b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"v" * n
    yield (
        "resp-many-fields-then-two-cl",
        _response(
            b"HTTP/1.1 200 OK", *[b"a:"] * (n // 4), b"Content-Length: 1", b"Content-Length: 1"
        ),
    )
    yield (
        "resp-1xx-fields-then-cl",
        _response(b"HTTP/1.1 100 C", *[b"a:"] * (n // 4), b"Content-Length: 5"),
    )
    yield "resp-reason-run", _response(b"HTTP/1.1 200 " + b"x" * n + b"\x01")


@pytest.mark.parametrize(
    ("name", "head"), list(_hostile_heads()), ids=lambda v: v if isinstance(v, str) else ""
)
def test_a_hostile_head_is_matched_in_linear_time(name: str, head: bytes) -> None:
    # Linear: ~2 ms on 256 KiB here; anything that backtracks is seconds or never ends.
    limits = FixedLimits(1 << 30, 1 << 30, 1 << 30)
    started = time.perf_counter()
    whole_request_head(head, limits)
    whole_response_head(head, limits)
    _strict.COMMON_REQUEST_HEAD.fullmatch(head)
    _strict.COMMON_RESPONSE_HEAD.fullmatch(head)
    assert time.perf_counter() - started < 0.5
