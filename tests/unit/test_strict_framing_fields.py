"""The framing-field checks after the grammar, found with one search per head, answer every
head as the former per-field ``find`` calls on a lower-cased copy did: same status, same
message (the former reading is kept here, compact, as the reference)."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from trioproxy.core import _strict
from trioproxy.core._errors import readable
from trioproxy.core._strict import FramingError, check_request_head, check_response_head

_CONTENT_LENGTH = re.compile(rb"[0-9]{1,19}")


def _field_value(head: bytes, lower: bytes, key: bytes) -> bytes | None:
    index = lower.find(key)
    if index < 0:
        return None
    start = index + len(key)
    if lower.find(key, start) >= 0:
        raise FramingError(f"more than one {key[1:-1].decode()} field")
    return head[start : head.index(b"\r", start)].strip(b"\t ")


def _length_fields(head: bytes, lower: bytes) -> tuple[int | None, bytes | None]:
    value = _field_value(head, lower, b"\ncontent-length:")
    content_length = None
    if value is not None and (
        _CONTENT_LENGTH.fullmatch(value) is None
        or (content_length := int(value)) > _strict._MAX_LENGTH
    ):
        raise FramingError(f"invalid Content-Length {readable(value[:40])}")
    return content_length, _field_value(head, lower, b"\ntransfer-encoding:")


def _reference_request(head: bytes) -> None:
    match = _strict._REQUEST_HEAD.fullmatch(head)
    assert match is not None
    http_10 = match.group(1) == b"0"
    lower = head.lower()
    content_length, coding = _length_fields(head, lower)
    host = _field_value(head, lower, b"\nhost:")
    if host is None:
        if not http_10:
            raise FramingError("HTTP/1.1 request without Host")
    elif _strict._HOST.fullmatch(host) is None:
        raise FramingError(f"invalid Host {readable(host[:40])}")
    index = lower.find(b"\nconnection:")
    while index >= 0:
        end = lower.index(b"\r", index)
        for option in lower[index + 12 : end].split(b","):
            if option.strip(b"\t ") in _strict._FRAMING_FIELD_NAMES:
                raise FramingError(f"Connection names {readable(option.strip())}")
        index = lower.find(b"\nconnection:", end)
    if coding is None:
        return
    if http_10:
        raise FramingError("Transfer-Encoding in an HTTP/1.0 request")
    if content_length is not None:
        raise FramingError("both Content-Length and Transfer-Encoding")
    status = _strict._transfer_coding_status(coding)
    if status:
        raise FramingError(f"unsupported Transfer-Encoding {readable(coding[:40])}", status=status)


def _reference_response(head: bytes) -> None:
    match = _strict._RESPONSE_HEAD.fullmatch(head)
    assert match is not None
    status = int(match.group(2))
    content_length, coding = _length_fields(head, head.lower())
    no_content = status < 200 or status == 204
    if coding is not None:
        if match.group(1) == b"0":
            raise FramingError("Transfer-Encoding in an HTTP/1.0 response")
        if content_length is not None:
            raise FramingError("both Content-Length and Transfer-Encoding")
        if no_content:
            raise FramingError(f"Transfer-Encoding in a {status} response")
        if _strict._transfer_coding_status(coding):
            raise FramingError(f"unsupported Transfer-Encoding {readable(coding[:40])}")
    elif content_length and no_content:
        raise FramingError(f"Content-Length {content_length} in a {status} response")


def _answer(check: object, head: bytes) -> tuple[int, str] | None:
    try:
        check(head)  # type: ignore[operator]
    except FramingError as refused:
        return refused.status, str(refused)
    return None


_NAMES = [
    b"Content-Length", b"CONTENT-LENGTH", b"content-length", b"Transfer-Encoding",
    b"transfer-ENCODING", b"Host", b"HOST", b"Connection", b"CONNECTION", b"X-Host",
    b"Content-Length-X", b"Hosts", b"Connections", b"Te",
]  # fmt: skip
_VALUES = [
    b"", b" ", b"0", b"4", b" 1024 ", b"\t7\t", b"0004", b"4, 4", b"+4", b"1_0",
    b"9223372036854775807", b"9223372036854775808", b"00000000000000000004",
    b"chunked", b"CHUNKED", b"gzip, chunked", b"chunked, gzip", b"gzip", b" chunked ,chunked",
    b"example.com", b"Example.COM:8080", b"a b", b"[::1]:80", b"keep-alive", b"Host",
    b"close, content-length", b"x,\tTransfer-Encoding ", b"upgrade", b"caf\xc3\xa9",
]  # fmt: skip
_FIELDS = st.lists(st.tuples(st.sampled_from(_NAMES), st.sampled_from(_VALUES)), max_size=5)


def _fields(fields: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(name + b":" + value + b"\r\n" for name, value in fields)


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from([b"1.1", b"1.0"]), _FIELDS)
def test_request_framing_fields_answer_as_before(
    version: bytes, fields: list[tuple[bytes, bytes]]
) -> None:
    head = b"POST / HTTP/" + version + b"\r\n" + _fields(fields) + b"\r\n"
    mine = _answer(
        lambda h: check_request_head(h, max_request_line_bytes=8192, max_header_count=100), head
    )
    assert mine == _answer(_reference_request, head)
    assert mine == _answer(
        lambda h: check_request_head(
            bytearray(h), max_request_line_bytes=8192, max_header_count=100
        ),
        head,
    )


@settings(max_examples=1500, deadline=None)
@given(
    st.sampled_from([b"1.1", b"1.0"]),
    st.sampled_from([b"100", b"101", b"200", b"204", b"205", b"304", b"199"]),
    _FIELDS,
)
def test_response_framing_fields_answer_as_before(
    version: bytes, code: bytes, fields: list[tuple[bytes, bytes]]
) -> None:
    head = b"HTTP/" + version + b" " + code + b" OK\r\n" + _fields(fields) + b"\r\n"
    mine = _answer(check_response_head, head)
    assert mine == _answer(_reference_response, head)
    assert mine == _answer(lambda h: check_response_head(bytearray(h)), head)
