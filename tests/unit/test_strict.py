"""Hostile input: strict framing (``core/_strict``, ``core/_chunked``) as pure functions.

Every rejected class has a row of its own in a table; the same rows run twice: here against
the pure checks (the order _connection runs them in: find_head_end, then check_request_head),
and through the real proxy on the memory network in ``engine/test_strict.py``, asserting the
exact status, the close, and that *nothing* reached the origin. The payloads are ours,
written for these rows (not the conformance corpora). Then the limits at their boundaries
(exactly at the limit passes, one byte more fails).

(Formerly the pure half of e2e/test_strict.py.)
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from trioproxy.config._settings import Limits
from trioproxy.core._chunked import ChunkedChecker
from trioproxy.core._strict import (
    FramingError,
    check_request_head,
    check_response_head,
    find_head_end,
)

LIMITS = Limits()


@dataclass(frozen=True)
class Row:
    id: str
    head: bytes
    status: int = 400
    body: bytes = b""


def _get(*fields: bytes, line: bytes = b"GET /cart HTTP/1.1") -> bytes:
    return line + b"\r\n" + b"".join(f + b"\r\n" for f in fields) + b"\r\n"


def _post(*fields: bytes, line: bytes = b"POST /checkout HTTP/1.1") -> bytes:
    return _get(b"Host: shop.test", *fields, line=line)


HOST = b"Host: shop.test"

# One row per class a strict parser (llhttp) rejects or reads differently from h11.
REJECTED_REQUESTS = [
    # Line endings: RFC 9112 2.2.
    Row("bare-lf-everywhere", b"GET /cart HTTP/1.1\nHost: shop.test\n\n"),
    Row("bare-lf-request-line", b"GET /cart HTTP/1.1\nHost: shop.test\r\n\r\n"),
    Row("bare-lf-after-field", b"GET /cart HTTP/1.1\r\nHost: shop.test\nAccept: */*\r\n\r\n"),
    Row("bare-lf-terminator", b"GET /cart HTTP/1.1\r\nHost: shop.test\r\n\n"),
    Row("lf-crlf-terminator", b"GET /cart HTTP/1.1\r\nHost: shop.test\n\r\n"),
    Row("bare-cr-in-field", b"GET /cart HTTP/1.1\r\nHost: shop.test\rX-Trace: 7\r\n\r\n"),
    Row("cr-cr-lf", b"GET /cart HTTP/1.1\r\r\nHost: shop.test\r\n\r\n"),
    Row("cr-space-lf", b"GET /cart HTTP/1.1\r\nHost: shop.test\r \nAccept: */*\r\n\r\n"),
    Row("bare-cr-hides-te", _post(b"Content-Length: 3\rTransfer-Encoding: chunked"), body=b"abc"),
    # obs-fold: RFC 9112 5.2 (reject, never unfold).
    Row("obs-fold-space", _get(HOST, b"X-Note: first", b" second")),
    Row("obs-fold-htab", _get(HOST, b"X-Note: first", b"\tsecond")),
    Row(
        "obs-fold-hides-te",
        _post(b"Content-Length: 3", b"X-Note: a", b" Transfer-Encoding: chunked"),
    ),
    Row("fold-as-first-field", _get(b" X-Note: early", HOST)),
    # Control characters and DEL: RFC 9110 5.5 (h11 lets most through).
    Row("nul-in-value", _get(HOST, b"X-Note: a\x00b")),
    Row("soh-in-value", _get(HOST, b"X-Note: \x01leading")),
    Row("bs-in-value", _get(HOST, b"X-Note: trailing\x08")),
    Row("vt-in-value", _get(HOST, b"X-Note: a\x0bb")),
    Row("ff-in-value", _get(HOST, b"X-Note: a\x0cb")),
    Row("esc-in-value", _get(HOST, b"X-Note: \x1b[31mred")),
    Row("us-in-value", _get(HOST, b"X-Note: a\x1fb")),
    Row("del-in-value", _get(HOST, b"X-Note: a\x7fb")),
    Row("ctl-in-name", _get(HOST, b"X-N\x01ote: v")),
    Row(
        "ctl-before-te",
        _post(b"Content-Length: 3", b"X-Pad: z\x04Transfer-Encoding: chunked"),
        body=b"abc",
    ),
    Row("nul-in-target", b"GET /cart\x00.php HTTP/1.1\r\nHost: shop.test\r\n\r\n"),
    # Field-line syntax: RFC 9112 5, 5.1.
    Row("space-before-colon", _get(b"Host : shop.test")),
    Row("tab-before-colon", _post(b"Content-Length\t: 3"), body=b"abc"),
    Row("line-without-colon", _get(HOST, b"X-Flag")),
    Row("empty-field-name", _get(HOST, b": orphan")),
    Row("non-token-name", _get(HOST, b"X[1]: v")),
    Row("obs-text-in-name", _get(HOST, b"X-Caf\xc3\xa9: v")),
    # Content-Length: RFC 9110 8.6, RFC 9112 6.3.
    Row("cl-and-te", _post(b"Content-Length: 5", b"Transfer-Encoding: chunked"), body=b"0\r\n\r\n"),
    Row("te-and-cl", _post(b"Transfer-Encoding: chunked", b"Content-Length: 5"), body=b"0\r\n\r\n"),
    Row("cl-repeated-equal", _post(b"Content-Length: 4", b"Content-Length: 4"), body=b"abcd"),
    Row("cl-repeated-case", _post(b"content-length: 4", b"CONTENT-LENGTH: 4"), body=b"abcd"),
    Row("cl-list", _post(b"Content-Length: 4, 4"), body=b"abcd"),
    Row("cl-list-tight", _post(b"Content-Length: 4,4"), body=b"abcd"),
    Row("cl-plus", _post(b"Content-Length: +4"), body=b"abcd"),
    Row("cl-minus", _post(b"Content-Length: -1")),
    Row("cl-hex", _post(b"Content-Length: 0x4"), body=b"abcd"),
    Row("cl-inner-space", _post(b"Content-Length: 4 4"), body=b"abcd"),
    Row("cl-empty", _post(b"Content-Length:")),
    Row("cl-20-digits", _post(b"Content-Length: 00000000000000000004"), body=b"abcd"),
    Row("cl-2-pow-63", _post(b"Content-Length: 9223372036854775808")),
    Row("cl-underscore", _post(b"Content-Length: 1_0")),
    # Transfer-Encoding: RFC 9112 6.1, 6.3 rule 4, 7.
    Row("te-chunked-twice", _post(b"Transfer-Encoding: chunked, chunked"), body=b"0\r\n\r\n"),
    Row("te-chunked-not-last", _post(b"Transfer-Encoding: chunked, gzip"), body=b"0\r\n\r\n"),
    Row("te-gzip-only", _post(b"Transfer-Encoding: gzip"), body=b"abc"),
    Row("te-identity", _post(b"Transfer-Encoding: identity"), body=b"abc"),
    Row("te-gzip-then-chunked", _post(b"Transfer-Encoding: gzip, chunked"), 501, b"0\r\n\r\n"),
    Row("te-two-fields", _post(b"Transfer-Encoding: gzip", b"Transfer-Encoding: chunked")),
    Row(
        "te-in-http10",
        _post(b"Transfer-Encoding: chunked", line=b"POST /c HTTP/1.0"),
        body=b"0\r\n\r\n",
    ),
    Row("te-empty", _post(b"Transfer-Encoding:")),
    Row("te-quoted", _post(b'Transfer-Encoding: "chunked"'), body=b"0\r\n\r\n"),
    Row("te-prefixed", _post(b"Transfer-Encoding: xchunked"), body=b"0\r\n\r\n"),
    Row("te-parameter", _post(b"Transfer-Encoding: chunked;q=1"), body=b"0\r\n\r\n"),
    Row("te-empty-element", _post(b"Transfer-Encoding: , chunked"), body=b"0\r\n\r\n"),
    Row("te-vtab", _post(b"Transfer-Encoding: chunked\x0b"), body=b"0\r\n\r\n"),
    # Versions: only HTTP/1.0 and HTTP/1.1 (RFC 9112 2.3).
    Row("version-1.2", _get(HOST, line=b"GET /cart HTTP/1.2")),
    Row("version-2.0", _get(HOST, line=b"GET /cart HTTP/2.0")),
    Row("version-0.9-declared", _get(HOST, line=b"GET /cart HTTP/0.9")),
    Row("version-1.10", _get(HOST, line=b"GET /cart HTTP/1.10")),
    Row("version-lowercase", _get(HOST, line=b"GET /cart http/1.1")),
    Row("version-no-minor", _get(HOST, line=b"GET /cart HTTP/1")),
    Row("version-missing", _get(HOST, line=b"GET /cart")),
    Row("version-trailing-space", _get(HOST, line=b"GET /cart HTTP/1.1 ")),
    # Host: RFC 9112 3.2 (exactly one in HTTP/1.1, valid authority syntax).
    Row("host-missing-http11", _get(b"Accept: */*")),
    Row("host-repeated-same", _get(HOST, HOST)),
    Row("host-repeated-other", _get(HOST, b"host: admin.test")),
    Row("host-with-space", _get(b"Host: shop test")),
    Row("host-with-userinfo", _get(b"Host: user@shop.test")),
    Row("host-with-path", _get(b"Host: shop.test/admin")),
    Row("host-double-port", _get(b"Host: shop.test:80:81")),
    # Method: a token (RFC 9110 9.1), and not the HTTP/2 preface (RFC 9113 3.4).
    Row("method-non-token", _get(HOST, line=b"G(E)T /cart HTTP/1.1")),
    Row("method-with-slash", _get(HOST, line=b"GET/1 /cart HTTP/1.1")),
    Row("method-pri", _get(HOST, line=b"PRI /cart HTTP/1.1")),
    # Target and request-line shape: RFC 9112 3, 3.2.
    Row("target-with-space", _get(HOST, line=b"GET /my cart HTTP/1.1")),
    Row("target-with-htab", _get(HOST, line=b"GET /my\tcart HTTP/1.1")),
    Row("target-obs-text", _get(HOST, line=b"GET /caf\xc3\xa9 HTTP/1.1")),
    Row("target-del", _get(HOST, line=b"GET /cart\x7f HTTP/1.1")),
    Row("target-empty", _get(HOST, line=b"GET  HTTP/1.1")),
    Row("target-relative", _get(HOST, line=b"GET cart HTTP/1.1")),
    Row("target-query-only", _get(HOST, line=b"GET ?id=1 HTTP/1.1")),
    Row("target-asterisk-suffix", _get(HOST, line=b"OPTIONS *x HTTP/1.1")),
    Row("target-authority-not-connect", _get(HOST, line=b"GET shop.test:443 HTTP/1.1")),
    Row("target-scheme-with-digits", _get(HOST, line=b"GET h2c://shop.test/ HTTP/1.1")),
    Row("double-space", _get(HOST, line=b"GET  /cart HTTP/1.1")),
    Row("leading-space", _get(HOST, line=b" GET /cart HTTP/1.1")),
    Row("leading-bare-lf", b"\n" + _get(HOST)),  # (a leading CRLF is skipped: RFC 9112 2.2)
    # Connection naming the fields this hop framed or routed by (RFC 9110 7.6.1).
    Row(
        "connection-names-cl",
        _post(b"Connection: Content-Length", b"Content-Length: 3"),
        body=b"abc",
    ),
    Row("connection-names-host", _get(HOST, b"Connection: keep-alive, host")),
    Row(
        "connection-names-te",
        _post(b"Connection: transfer-encoding", b"Transfer-Encoding: chunked"),
        body=b"0\r\n\r\n",
    ),
]

# Heads that must pass: what real clients send, and the RFC's corners that strict parsers take.
BROWSER_HEAD = (
    b"GET /static/app.3f9c.js?v=2024-11 HTTP/1.1\r\n"
    b"Host: www.shop.test\r\n"
    b"Connection: keep-alive\r\n"
    b'sec-ch-ua: "Chromium";v="131", "Not_A Brand";v="24"\r\n'
    b"sec-ch-ua-mobile: ?0\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    b"Chrome/131.0.0.0 Safari/537.36\r\n"
    b'sec-ch-ua-platform: "Linux"\r\n'
    b"Accept: */*\r\n"
    b"Sec-Fetch-Site: same-origin\r\n"
    b"Sec-Fetch-Mode: no-cors\r\n"
    b"Sec-Fetch-Dest: script\r\n"
    b"Referer: https://www.shop.test/cart?step=2\r\n"
    b"Accept-Encoding: gzip, deflate, br, zstd\r\n"
    b"Accept-Language: en-GB,en-US;q=0.9,en;q=0.8\r\n"
    b'Cookie: session=3a1f9c; theme=dark; consent={"ads":false}\r\n'
    b'If-None-Match: W/"5e1-18f"\r\n'
    b"\r\n"
)
ACCEPTED_REQUESTS = [
    Row("browser", BROWSER_HEAD, 200),
    Row(
        "curl",
        b"GET /cart HTTP/1.1\r\nHost: shop.test\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n",
        200,
    ),
    Row("no-fields-http10", b"GET /cart HTTP/1.0\r\n\r\n", 200),
    Row("absolute-form", _get(HOST, line=b"GET http://shop.test/cart?x=1 HTTP/1.1"), 200),
    Row("asterisk-form", _get(HOST, line=b"OPTIONS * HTTP/1.1"), 200),
    Row("extension-method", _get(HOST, line=b"PURGE /cart HTTP/1.1"), 200),
    Row("target-sub-delims", _get(HOST, line=b"GET /a;b/c,d?e=f&g=%20h|i{j}^k HTTP/1.1"), 200),
    Row("obs-text-value", _get(HOST, b"X-Name: Fran\xe7ois"), 200),
    Row("empty-value", _get(HOST, b"X-Empty:"), 200),
    Row("htab-ows", _get(HOST, b"X-Tabbed:\t\tv1\tv2\t"), 200),
    Row("empty-host", _get(b"Host:"), 200),
    Row("host-ipv6", _get(b"Host: [::1]:8080"), 200),
    Row("host-pct", _get(b"Host: sh%6Fp.test"), 200),
    Row("cl-ows", _post(b"Content-Length:   3  "), 200, b"abc"),
    Row("cl-leading-zero", _post(b"Content-Length: 0003"), 200, b"abc"),
    Row("cl-zero", _post(b"Content-Length: 0"), 200),
    Row("te-mixed-case", _post(b"transfer-encoding:\tChunked "), 200, b"3\r\nabc\r\n0\r\n\r\n"),
    Row("repeated-other-fields", _get(HOST, b"X-Dup: 1", b"X-Dup: 2"), 200),
    Row("connection-options", _get(HOST, b"Connection: close, X-Hop", b"X-Hop: 1"), 200),
]


def _strict_verdict(payload: bytes, limits: Limits = LIMITS) -> int:
    """The status the strict checks give ``payload`` in _connection's order; 0 if it passes."""
    try:
        end = find_head_end(payload, 0)
        assert end >= 0, "head not delimited"
        check_request_head(
            payload[:end],
            max_request_line_bytes=limits.max_request_line_bytes,
            max_header_count=limits.max_header_count,
        )
    except FramingError as exc:
        return exc.status
    return 0


@pytest.mark.parametrize("row", REJECTED_REQUESTS, ids=lambda row: row.id)
def test_rejected_request_heads(row: Row) -> None:
    assert _strict_verdict(row.head + row.body) == row.status
    # check_request_head stands alone too: given the whole head, however it is delimited.
    with pytest.raises(FramingError) as caught:
        check_request_head(row.head, max_request_line_bytes=8192, max_header_count=100)
    assert caught.value.status == row.status
    assert str(caught.value)  # a reason for the log


@pytest.mark.parametrize("row", ACCEPTED_REQUESTS, ids=lambda row: row.id)
def test_accepted_request_heads(row: Row) -> None:
    assert find_head_end(row.head + row.body, 0) == len(row.head)
    check_request_head(row.head, max_request_line_bytes=8192, max_header_count=100)


def test_empty_lines_before_the_request_line_are_the_callers_to_skip() -> None:
    """RFC 9112 2.2: _connection skips CRLFs before a request line; the check itself sees
    only what follows them, and refuses a head that starts with one."""
    with pytest.raises(FramingError):
        check_request_head(b"\r\n" + _get(HOST), max_request_line_bytes=8192, max_header_count=100)


def test_connect_authority_form_is_left_to_the_engine() -> None:
    # RFC 9112 3.2.3: authority-form belongs to CONNECT; a reverse proxy answers it 405.
    check_request_head(
        b"CONNECT shop.test:443 HTTP/1.1\r\nHost: shop.test:443\r\n\r\n",
        max_request_line_bytes=8192,
        max_header_count=100,
    )


def test_largest_content_length_passes() -> None:
    check_request_head(
        _post(b"Content-Length: 9223372036854775807"),
        max_request_line_bytes=8192,
        max_header_count=100,
    )


def test_request_line_limit_counts_its_crlf() -> None:
    """nginx's rule: the request line *with* its CRLF fits the buffer. Exactly at the limit
    passes, one byte more is 414; the same boundary _connection applies while incomplete."""
    for length, status in ((64, 0), (65, 414)):
        line = b"GET /" + b"a" * (length - len(b"GET / HTTP/1.1\r\n")) + b" HTTP/1.1"
        head = _get(HOST, line=line)
        assert head.index(b"\n") + 1 == length
        assert _strict_verdict(head, Limits(max_request_line_bytes=64)) == status


def test_header_count_limit() -> None:
    fields = [HOST] + [b"X-F%d: v" % i for i in range(99)]
    assert _strict_verdict(_get(*fields)) == 0  # exactly 100
    assert _strict_verdict(_get(*fields, b"X-One-More: v")) == 431


# find_head_end: incremental, early, and blind to what follows the head.


def _feed_bytewise(payload: bytes) -> tuple[int, int]:
    """(index of the byte at which find_head_end raised or -1, end or -1), fed one byte at a
    time the way _connection feeds it."""
    buffer = bytearray()
    for index in range(len(payload)):
        searched = len(buffer)
        buffer.append(payload[index])
        try:
            end = find_head_end(buffer, searched)
        except FramingError:
            return index, -1
        if end >= 0:
            return -1, end
    return -1, -1


@pytest.mark.parametrize(
    ("payload", "offending"),
    [
        (b"GET / HTTP/1.1\nHost: shop.test\n\n", 14),
        (b"GET / HTTP/1.1\r\nHost: shop.test\rX", 32),  # the CR is judged by its successor
        (b"GET / HTTP/1.1\r\nHost: shop\x00.test", 26),
        (b"GET / HTTP/1.1\r\r\n", 15),
        (b"GET / HTTP/1.1\r\nHost: x\r \nX: y\r\n\r\n", 24),  # CR, SP, LF: no CRLF at all
    ],
)
def test_find_head_end_rejects_at_the_offending_byte(payload: bytes, offending: int) -> None:
    assert _feed_bytewise(payload) == (offending, -1)
    with pytest.raises(FramingError):
        find_head_end(payload, 0)


def test_bare_lf_head_gets_400_at_once_not_a_timeout() -> None:
    # The whole of it arrives in one read: no CRLF CRLF will ever come, yet it fails now.
    with pytest.raises(FramingError) as caught:
        find_head_end(b"GET / HTTP/1.1\nHost: x\n\n", 0)
    assert caught.value.status == 400


@pytest.mark.parametrize("row", ACCEPTED_REQUESTS, ids=lambda row: row.id)
def test_find_head_end_same_whole_or_bytewise(row: Row) -> None:
    payload = row.head + b"\x00\n\r binary body"  # never judged: it is not head
    assert find_head_end(payload, 0) == len(row.head)
    assert _feed_bytewise(payload) == (-1, len(row.head))


def test_pending_cr_at_end_is_not_judged_yet() -> None:
    buffer = bytearray(b"GET / HTTP/1.1\r")
    assert find_head_end(buffer, 0) == -1
    buffer += b"\nHost: x\r\n\r"
    assert find_head_end(buffer, 15) == -1
    buffer += b"\n"
    assert find_head_end(buffer, len(buffer) - 1) == len(buffer)


# Response heads from the upstream: the same care; the call site turns a failure into a 502.

REJECTED_RESPONSES = [
    Row("bare-lf", b"HTTP/1.1 200 OK\nContent-Length: 2\n\n"),
    Row("obs-fold", b"HTTP/1.1 200 OK\r\nX-Note: a\r\n b\r\nContent-Length: 2\r\n\r\n"),
    Row("ctl-in-value", b"HTTP/1.1 200 OK\r\nX-Note: a\x01b\r\nContent-Length: 2\r\n\r\n"),
    Row("ctl-in-reason", b"HTTP/1.1 200 O\x07K\r\nContent-Length: 2\r\n\r\n"),
    Row("space-before-colon", b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\n"),
    Row("status-two-digits", b"HTTP/1.1 20 OK\r\nContent-Length: 2\r\n\r\n"),
    Row("status-600", b"HTTP/1.1 600 Odd\r\nContent-Length: 2\r\n\r\n"),
    Row("status-letters", b"HTTP/1.1 2OO OK\r\nContent-Length: 2\r\n\r\n"),
    Row("version-1.2", b"HTTP/1.2 200 OK\r\nContent-Length: 2\r\n\r\n"),
    Row("version-2", b"HTTP/2 200 OK\r\nContent-Length: 2\r\n\r\n"),
    Row("cl-repeated", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n"),
    Row("cl-list", b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\n"),
    Row("cl-sign", b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\n"),
    Row("cl-and-te", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"),
    Row("te-gzip", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"),
    Row("te-gzip-chunked", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
    Row(
        "te-twice",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
    ),
    Row("te-in-http10", b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
    Row("te-in-204", b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n"),
    Row("te-in-1xx", b"HTTP/1.1 103 Early Hints\r\nTransfer-Encoding: chunked\r\n\r\n"),
    Row("cl-in-204", b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"),
]
ACCEPTED_RESPONSES = [
    Row("plain", b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n"),
    Row("no-reason", b"HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n"),
    Row("empty-reason", b"HTTP/1.1 500 \r\nContent-Length: 0\r\n\r\n"),
    Row("obs-text-reason", b"HTTP/1.1 200 D\xe9j\xe0 vu\r\nContent-Length: 0\r\n\r\n"),
    Row("chunked", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n"),
    Row("204-with-cl-0", b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"),
    Row("304-with-cl", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 1234\r\n\r\n"),
    Row(
        "101",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    ),
    Row("http10-until-close", b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n"),
]


@pytest.mark.parametrize("row", REJECTED_RESPONSES, ids=lambda row: row.id)
def test_rejected_response_heads(row: Row) -> None:
    with pytest.raises(FramingError):
        end = find_head_end(row.head, 0)
        check_response_head(row.head[:end] if end >= 0 else row.head)


@pytest.mark.parametrize("row", ACCEPTED_RESPONSES, ids=lambda row: row.id)
def test_accepted_response_heads(row: Row) -> None:
    assert find_head_end(row.head, 0) == len(row.head)
    check_response_head(row.head)


# ChunkedChecker: RFC 9112 7.1, as llhttp reads it.

VALID_CHUNKED = [
    ("plain", b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
    ("upper-hex", b"A\r\n0123456789\r\n0\r\n\r\n"),
    ("leading-zeros", b"0000000000000005\r\nhello\r\n000\r\n\r\n"),
    ("extensions", b'5;sig=ab12;name="q \\"x\\" y"\r\nhello\r\n0;last\r\n\r\n'),
    ("trailers", b"5\r\nhello\r\n0\r\nX-Checksum: 1f2e\r\nX-Empty:\r\n\r\n"),
    ("max-size-line", b"7fffffffffffffff\r\n"),  # valid so far: 2**63-1 bytes to come
    ("empty", b"0\r\n\r\n"),
]
INVALID_CHUNKED = [
    ("bare-lf-size", b"5\nhello\r\n0\r\n\r\n"),
    ("bare-cr-size", b"5\rhello\r\n0\r\n\r\n"),
    ("bare-cr-in-ext", b"5;a\rb\r\nhello\r\n0\r\n\r\n"),
    ("hex-prefix", b"0x5\r\nhello\r\n0\r\n\r\n"),
    ("plus-sign", b"+5\r\nhello\r\n0\r\n\r\n"),
    ("minus-sign", b"-5\r\nhello\r\n0\r\n\r\n"),
    ("space-before-size", b" 5\r\nhello\r\n0\r\n\r\n"),
    ("space-after-size", b"5 \r\nhello\r\n0\r\n\r\n"),
    ("htab-after-size", b"5\t\r\nhello\r\n0\r\n\r\n"),
    ("underscore", b"5_\r\nhello\r\n0\r\n\r\n"),
    ("empty-size", b"\r\nhello\r\n0\r\n\r\n"),
    ("17-digits", b"00000000000000005\r\nhello\r\n0\r\n\r\n"),
    ("beyond-2-pow-63", b"8000000000000000\r\n"),
    ("empty-ext", b"5;\r\nhello\r\n0\r\n\r\n"),
    ("bws-before-semicolon", b"5 ;a=b\r\nhello\r\n0\r\n\r\n"),
    ("bws-after-semicolon", b"5; a=b\r\nhello\r\n0\r\n\r\n"),
    ("bws-around-equals", b"5;a = b\r\nhello\r\n0\r\n\r\n"),
    ("ext-without-value", b"5;a=\r\nhello\r\n0\r\n\r\n"),
    ("ext-ctl", b"5;a=\x01\r\nhello\r\n0\r\n\r\n"),
    ("ext-obs-text", b"5;a=\xff\r\nhello\r\n0\r\n\r\n"),
    ("ext-unterminated-quote", b'5;a="b\r\nhello\r\n0\r\n\r\n'),
    ("data-too-long", b"5\r\nhello!\r\n0\r\n\r\n"),
    ("data-lf-only", b"5\r\nhello\n0\r\n\r\n"),
    ("data-cr-only", b"5\r\nhello\r0\r\n\r\n"),
    ("last-chunk-lf", b"5\r\nhello\r\n0\n\n"),
    ("trailer-content-length", b"0\r\nContent-Length: 5\r\n\r\n"),
    ("trailer-transfer-encoding", b"0\r\nX-A: 1\r\ntransfer-encoding: chunked\r\n\r\n"),
    ("trailer-bare-lf", b"0\r\nX-Trailer: 1\n\n"),
    ("trailer-bare-lf-end", b"0\r\nX-Trailer: 1\r\n\n"),
    ("trailer-cr-space-lf", b"0\r\nX-Trailer: 1\r \n\r\n"),
    ("trailer-obs-fold", b"0\r\nX-Trailer: 1\r\n 2\r\n\r\n"),
    ("trailer-ctl", b"0\r\nX-Trailer: a\x00b\r\n\r\n"),
    ("trailer-space-before-colon", b"0\r\nX-Trailer : 1\r\n\r\n"),
    ("trailer-no-colon", b"0\r\nX-Trailer\r\n\r\n"),
]


def _check_chunked(body: bytes, pieces: int = 1) -> ChunkedChecker:
    checker = ChunkedChecker()
    step = max(1, len(body) // pieces)
    for start in range(0, len(body), step):
        checker.feed(body[start : start + step])
    return checker


@pytest.mark.parametrize(("name", "body"), VALID_CHUNKED, ids=[v[0] for v in VALID_CHUNKED])
def test_valid_chunked_bodies(name: str, body: bytes) -> None:
    complete = body.endswith(b"\r\n\r\n")
    for pieces in (1, 3, len(body)):
        checker = _check_chunked(body + b"GET / HTTP/1.1\r\n" * complete, pieces)
        assert checker.done is complete


@pytest.mark.parametrize(("name", "body"), INVALID_CHUNKED, ids=[v[0] for v in INVALID_CHUNKED])
def test_invalid_chunked_bodies(name: str, body: bytes) -> None:
    for pieces in (1, 3, len(body)):
        with pytest.raises(FramingError):
            _check_chunked(body, pieces)


def test_chunked_trailer_bare_lf_raises_before_h11_could_end_the_body() -> None:
    """h11 ends a trailer section at LF LF; the checker must object at the first bare LF, not
    wait for a CRLF CRLF that never comes (h11 would have finished the message by then)."""
    checker = ChunkedChecker()
    checker.feed(b"0\r\nX-T: 1")
    with pytest.raises(FramingError):
        checker.feed(b"\n")


def test_chunked_line_and_trailer_limits() -> None:
    checker = ChunkedChecker(max_line_bytes=64)
    checker.feed(b"5;" + b"a" * 60)
    with pytest.raises(FramingError):
        checker.feed(b"a" * 8)
    checker = ChunkedChecker(max_trailer_bytes=64)
    checker.feed(b"0\r\nX-Big: " + b"b" * 50)
    with pytest.raises(FramingError) as caught:
        checker.feed(b"b" * 20)
    assert caught.value.status == 431


def test_chunk_data_is_skipped_not_parsed() -> None:
    data = bytes(range(256)) * 256  # CR, LF, NUL and friends in the data are just data
    checker = ChunkedChecker()
    checker.feed(b"%x\r\n" % len(data) + data + b"\r\n0\r\n\r\n")
    assert checker.done
