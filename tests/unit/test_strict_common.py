"""The common-head fast path of the strict checks (`_strict.COMMON_REQUEST_HEAD`,
`COMMON_RESPONSE_HEAD`, `_headreader.whole_request_head` / `whole_response_head`) against the
full check: a head it vouches for, the full check passes, and at the same end; every head
gets the same answer (status and message) with it as without it. Heads are generated at the
edge of the common subset: framing fields in every spelling, values that just pass or just
fail, a byte of any kind put anywhere, and limits around the head's own sizes."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trioproxy.core import _strict
from trioproxy.core._headreader import (
    FixedLimits,
    RequestHeadReader,
    ResponseHeadReader,
    whole_request_head,
    whole_response_head,
)
from trioproxy.core._strict import FramingError, check_request_head, check_response_head

_REQUEST_LINES = [
    b"GET / HTTP/1.1", b"GET /a?b=c HTTP/1.0", b"POST /upload HTTP/1.1", b"OPTIONS * HTTP/1.1",
    b"GET http://example.com/x HTTP/1.1", b"CONNECT example.com:443 HTTP/1.1",
    b"PRI * HTTP/1.1", b"PRI / HTTP/1.1", b"PRIX / HTTP/1.1", b"GET / HTTP/1.2",
    b"GET / HTTP/2.0", b"GET  / HTTP/1.1", b"GET example.com HTTP/1.1", b"GET /\x80 HTTP/1.1",
    b"G@T / HTTP/1.1", b"GET / http/1.1",
]  # fmt: skip
_STATUS_LINES = [
    b"HTTP/1.1 200 OK", b"HTTP/1.1 200", b"HTTP/1.1 200 ", b"HTTP/1.1 204 No Content",
    b"HTTP/1.1 304 Not Modified", b"HTTP/1.1 100 Continue", b"HTTP/1.1 101 Switching",
    b"HTTP/1.1 103 Early Hints", b"HTTP/1.1 199 X", b"HTTP/1.1 205 Reset", b"HTTP/1.1 599 X",
    b"HTTP/1.1 600 X", b"HTTP/1.1 099 X", b"HTTP/1.0 200 OK", b"HTTP/1.0 204 X",
    b"HTTP/1.1 200 O\x01K", b"HTTP/1.1 200 caf\xc3\xa9", b"HTTP/1.1 2004 OK",
]  # fmt: skip
_NAMES = [
    b"Host", b"host", b"HOST", b"hOsT", b"Content-Length", b"content-length",
    b"CONTENT-LENGTH", b"Transfer-Encoding", b"transfer-encoding", b"Connection",
    b"connection", b"CONNECTION", b"X-Host", b"Hosts", b"Host ", b" Host", b"Content-Lengths",
    b"Content-Length-X", b"Connections", b"TE", b"User-Agent", b"Accept", b"Server",
    b"ETag", b"X", b"", b"X Y", b"X\x7f", b"Ho\xc3\xa9st",
]  # fmt: skip
_VALUES = [
    b"", b" ", b"\t", b"0", b"4", b" 1024", b" 1024 ", b"\t7\t", b"0004", b"4, 4", b"+4",
    b"-1", b"1_0", b" 999999999999999999", b" 9999999999999999999", b"9223372036854775807",
    b"9223372036854775808", b"00000000000000000004", b"chunked", b" chunked", b"CHUNKED",
    b" Chunked\t", b"gzip, chunked", b"chunked, gzip", b"chunked, chunked", b"gzip",
    b" chunked ,chunked", b"chunked;x=1", b" example.com", b"example.com:8080",
    b" Example.COM:8080 ", b" [::1]:80", b" [::1", b" a b", b" a%41b", b" a%4", b" a/b",
    b" 127.0.0.1", b" x:", b" :80", b" keep-alive", b" Keep-Alive", b" close", b"close ",
    b" keep-alive, close", b" upgrade", b" Host", b" close, content-length",
    b" x,\tTransfer-Encoding ", b" caf\xc3\xa9", b" a\x01b", b" a\rb", b" a\nb", b" \x7f",
    b" wrk", b' "etag"',
]  # fmt: skip
# Bytes that make or break a head, put anywhere by `_mutated`.
_ODD_BYTES = b"\r\n\t :,0a\x00\x01\x7f\x80\xff"


def _head(start: bytes, fields: list[tuple[bytes, bytes]]) -> bytes:
    return start + b"\r\n" + b"".join(n + b":" + v + b"\r\n" for n, v in fields) + b"\r\n"


@st.composite
def _mutated(draw: st.DrawFn, heads: st.SearchStrategy[bytes]) -> bytes:
    head = draw(heads)
    if draw(st.booleans()):
        return head
    at = draw(st.integers(0, len(head)))
    byte = draw(st.sampled_from(_ODD_BYTES))
    cut = draw(st.integers(0, 1))  # insert, or replace the byte at ``at``
    return head[:at] + bytes([byte]) + head[at + cut :]


_FIELD = st.tuples(st.sampled_from(_NAMES), st.sampled_from(_VALUES))
# A framing field in some spelling with a value of its kind, valid or nearly so.
_FRAMING_FIELD = st.one_of(
    st.tuples(
        st.sampled_from([b"Host", b"hOsT", b"Hosts"]),
        st.sampled_from([b" x", b" [::1]:80", b" a b", b"\t:80\t", b" a%4", b" \xc3\xa9"]),
    ),
    st.tuples(
        st.sampled_from([b"Content-Length", b"content-LENGTH", b"Content-Length-X"]),
        st.sampled_from([b" 0", b"\t5 ", b" 999999999999999999", b" 9223372036854775808", b"5,5"]),
    ),
    st.tuples(
        st.sampled_from([b"Transfer-Encoding", b"transfer-encoding", b"TE"]),
        st.sampled_from([b" chunked", b"CHUNKED\t", b" gzip, chunked", b" chunked, chunked"]),
    ),
    st.tuples(
        st.sampled_from([b"Connection", b"CONNECTION", b"Connections"]),
        st.sampled_from([b" close", b" Keep-Alive ", b" Host", b" close, content-length", b""]),
    ),
)
_PLAIN = st.tuples(st.sampled_from([b"User-Agent", b"Accept", b"X"]), st.sampled_from(_VALUES))


@st.composite
def _near_common(draw: st.DrawFn, usual: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The fields of a usual head (``usual``, among plain ones), and one or two of any kind,
    in any order: heads just inside the common subset, and just outside it."""
    odd = draw(st.lists(st.one_of(_FIELD, _FRAMING_FIELD), max_size=2))
    fields = usual + draw(st.lists(_PLAIN, max_size=3)) + odd
    return draw(st.permutations(fields))


_REQUEST_FIELDS = st.one_of(
    st.lists(_FIELD, max_size=6),
    _near_common([(b"Host", b" example.com")]),
    _near_common([(b"Host", b" example.com"), (b"Content-Length", b" 5")]),
)
_RESPONSE_FIELDS = st.one_of(
    st.lists(_FIELD, max_size=6),
    _near_common([]),
    _near_common([(b"Content-Length", b" 5")]),
)
_REQUEST_HEADS = _mutated(st.builds(_head, st.sampled_from(_REQUEST_LINES), _REQUEST_FIELDS))
_RESPONSE_HEADS = _mutated(st.builds(_head, st.sampled_from(_STATUS_LINES), _RESPONSE_FIELDS))
# What may follow a head in the same read: a body, the next head, or half of one.
_TAILS = st.sampled_from([b"", b"body\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\r\n"])


def _answer(check: Callable[[bytes], None], head: bytes) -> tuple[int, str] | None:
    try:
        check(head)
    except FramingError as refused:
        return refused.status, str(refused)
    return None


def _reader_end(reader: RequestHeadReader | ResponseHeadReader) -> int | tuple[int, str]:
    try:
        return reader.head_end()
    except FramingError as refused:
        return refused.status, str(refused)


@settings(max_examples=3000, deadline=None)
@given(_REQUEST_HEADS, st.integers(20, 200), st.integers(0, 8))
def test_a_request_head_gets_the_full_checks_answer(head: bytes, line: int, count: int) -> None:
    def full(h: bytes) -> None:
        _strict._check_request_head_fully(h, max_request_line_bytes=line, max_header_count=count)

    def checked(h: bytes) -> None:
        check_request_head(h, max_request_line_bytes=line, max_header_count=count)

    answer = _answer(full, head)
    assert _answer(checked, head) == answer
    assert _answer(lambda h: checked(bytearray(h)), head) == answer  # type: ignore[arg-type]
    fits = head.find(b"\n") < line and head.count(b"\n") - 2 <= count
    if _strict.COMMON_REQUEST_HEAD.fullmatch(head) is not None and fits:
        assert answer is None


@settings(max_examples=3000, deadline=None)
@given(_RESPONSE_HEADS)
def test_a_response_head_gets_the_full_checks_answer(head: bytes) -> None:
    answer = _answer(_strict._check_response_head_fully, head)
    assert _answer(check_response_head, head) == answer
    assert _answer(lambda h: check_response_head(bytearray(h)), head) == answer
    if _strict.COMMON_RESPONSE_HEAD.fullmatch(head) is not None:
        assert answer is None


@settings(max_examples=3000, deadline=None)
@given(_REQUEST_HEADS, _TAILS, st.integers(40, 300), st.integers(20, 200), st.integers(0, 8))
def test_a_request_head_vouched_for_at_once_is_one_the_reader_accepts(
    head: bytes, tail: bytes, head_bytes: int, line: int, count: int
) -> None:
    data = head + tail
    limits = FixedLimits(head_bytes, line, count)
    reader_end = _reader_end(RequestHeadReader(bytearray(data), limits))
    if whole_request_head(data, limits):
        assert reader_end == data.find(b"\r\n\r\n") + 4  # accepted: an end, not a refusal


@settings(max_examples=3000, deadline=None)
@given(_RESPONSE_HEADS, _TAILS, st.integers(40, 300))
def test_a_response_head_vouched_for_at_once_ends_where_the_readers_does(
    head: bytes, tail: bytes, head_bytes: int
) -> None:
    data = head + tail
    limits = FixedLimits(head_bytes)
    end = whole_response_head(data, limits)
    if end >= 0:
        assert end == _reader_end(ResponseHeadReader(bytearray(data), limits))


WRK = b"GET /1k.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: wrk\r\n\r\n"
BROWSER = (
    b"POST /form HTTP/1.1\r\nHost: www.example.com\r\nConnection: keep-alive\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\nAccept: */*\r\n"
    b"Content-Length: 11\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\n"
)
NGINX = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sun, 06 Dec 2026 22:44:22 GMT\r\n"
    b"Content-Type: application/octet-stream\r\nContent-Length: 1024\r\n"
    b'Connection: keep-alive\r\nETag: "6b15e294-400"\r\nAccept-Ranges: bytes\r\n\r\n'
)
LIMITS = FixedLimits(65536, 8192, 100)


@pytest.mark.parametrize("head", [WRK, BROWSER, b"GET / HTTP/1.0\r\nhost: x:80\r\n\r\n"])
def test_the_usual_request_heads_are_vouched_for_at_once(head: bytes) -> None:
    assert whole_request_head(head + b"hello world", LIMITS)


@pytest.mark.parametrize(
    "head",
    [
        NGINX,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\nServer: x\r\n\r\n",
        b"HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n",
    ],
)
def test_the_usual_response_heads_are_vouched_for_at_once(head: bytes) -> None:
    assert whole_response_head(head + b"0123", LIMITS) == len(head)


@pytest.mark.parametrize(
    "head",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close, host\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"PRI / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n",
        b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
)
def test_a_request_head_the_fast_path_cannot_prove_goes_to_the_reader(head: bytes) -> None:
    assert not whole_request_head(head, LIMITS)
    assert not whole_request_head(WRK, FixedLimits(len(WRK) - 1, 8192, 100))  # sizes too
    assert not whole_request_head(WRK, FixedLimits(65536, WRK.index(b"\n"), 100))
    assert not whole_request_head(WRK, FixedLimits(65536, 8192, 1))


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1234567890123456789\r\n\r\n",
    ],
)
def test_a_response_head_the_fast_path_cannot_prove_goes_to_the_reader(head: bytes) -> None:
    assert whole_response_head(head, LIMITS) == -1
    assert whole_response_head(NGINX, FixedLimits(len(NGINX) - 1)) == -1
