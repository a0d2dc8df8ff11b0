"""Bytes in messages to operators and clients read as escaped text, never as Python reprs."""

from __future__ import annotations

import h11
import pytest

from trioproxy.core._adminanswers import bad_request
from trioproxy.core._chunked import ChunkedChecker
from trioproxy.core._errors import ClientError, UpstreamError, readable, without_bytes_reprs
from trioproxy.core._strict import FramingError, check_request_head


@pytest.mark.parametrize(
    ("data", "shown"),
    [
        (b"GARBAGE", '"GARBAGE"'),
        (b"X-Req\tuest", '"X-Req\\tuest"'),
        (b'a"b\\c', '"a\\"b\\\\c"'),
        (b"\r\n\x00\x7f\xe9", '"\\r\\n\\x00\\x7f\\xe9"'),
        (bytearray(b"b'x'"), "\"b'x'\""),
    ],
)
def test_bytes_are_shown_quoted_and_escaped(data: bytes, shown: str) -> None:
    assert readable(data) == shown


def _refused(head: bytes) -> str:
    with pytest.raises(FramingError) as caught:
        check_request_head(head, max_request_line_bytes=8192, max_header_count=100)
    return str(caught.value)


def test_the_strict_checks_name_bytes_readably() -> None:
    assert _refused(b"GARBAGE\r\n\r\n") == 'malformed request line "GARBAGE"'
    field = b"GET / HTTP/1.1\r\nHost: a\r\nX-Req\tuest: 1\r\n\r\n"
    assert _refused(field) == 'invalid field name "X-Req\\tuest"'


def test_a_refused_admin_request_gets_a_readable_400_body() -> None:
    refused = FramingError(_refused(b"GARBAGE\r\n\r\n"))
    assert bad_request(refused) == (400, b"text/plain; charset=utf-8", BODY)


BODY = b'bad request: malformed request line "GARBAGE"\n'


def test_a_bad_chunk_size_line_is_named_readably() -> None:
    with pytest.raises(FramingError) as caught:
        ChunkedChecker().feed(b"x\x01\r\n")
    assert str(caught.value) == 'malformed chunk-size line "x\\x01\\r\\n"'


def _h11_refusal(data: bytes) -> h11.RemoteProtocolError:
    server = h11.Connection(h11.SERVER)
    server.receive_data(data)
    with pytest.raises(h11.RemoteProtocolError) as caught:
        server.next_event()
    return caught.value


def test_h11_messages_relayed_in_our_errors_lose_their_reprs() -> None:
    exc = _h11_refusal(b"GET / HTTP/1.1\r\nHost: a\r\nX-Req\tuest: 1\r\n\r\n")
    assert "bytearray(b" in str(exc)  # what h11 writes
    relayed = ClientError(f"malformed request: {exc}", status=exc.error_status_hint)
    assert str(relayed) == 'malformed request: illegal header line: "X-Req\\tuest: 1"'
    footer = UpstreamError("invalid response: malformed chunk footer: b'xy' (expected b'\\r\\n')")
    assert str(footer) == 'invalid response: malformed chunk footer: "xy" (expected "\\r\\n")'


@pytest.mark.parametrize(
    "message",
    ["no bytes here", "a \"quoted\" 'word' b", "\"ab'c'\" stays", "b'unterminated"],
)
def test_messages_without_whole_reprs_are_left_alone(message: str) -> None:
    assert without_bytes_reprs(message) == message
