"""The one head reader (`core._headreader`): ends, refusals and limits, whole or in pieces.

Pure: no sockets. The engine tests (test_strict, test_hardening, test_abuse, test_admin) check
the same behaviours through the loops that use it.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trioproxy.core._headreader import (
    FixedLimits,
    HeadReader,
    HeadTooLarge,
    RequestHeadReader,
    ResponseHeadReader,
)
from trioproxy.core._strict import FramingError

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"


def request_reader(
    head_bytes: int = 1024, line_bytes: int = 256, header_count: int = 10
) -> HeadReader:
    return RequestHeadReader(bytearray(), FixedLimits(head_bytes, line_bytes, header_count))


def response_reader(head_bytes: int = 1024) -> HeadReader:
    return ResponseHeadReader(bytearray(), FixedLimits(head_bytes))


Outcome = tuple[str, int, int]  # ("end", end, skipped) or ("refused", status, 0)


def feed(reader: HeadReader, pieces: list[bytes]) -> Outcome:
    """Feed ``pieces`` one by one, as the I/O loops do, until a head ends or is refused."""
    try:
        for piece in pieces:
            reader.add(piece)
            end = reader.head_end()
            if end >= 0:
                return "end", end, reader.skipped
    except FramingError as exc:
        return "refused", exc.status, 0
    return "need more", -1, reader.skipped


def split(data: bytes, points: list[int]) -> list[bytes]:
    cuts = sorted({0, len(data), *(p % (len(data) + 1) for p in points)})
    return [data[a:b] for a, b in itertools.pairwise(cuts)] or [b""]


def test_a_whole_head_ends_where_its_blank_line_does() -> None:
    assert feed(request_reader(), [GET + b"pipelined"]) == ("end", len(GET), 0)


def test_empty_lines_before_a_request_line_are_skipped() -> None:
    # RFC 9112 2.2; a CR and its LF may arrive apart.
    reader = request_reader()
    assert feed(reader, [b"\r\n\r", b"\n", GET]) == ("end", len(GET), 4)
    assert bytes(reader.buffer) == GET


def test_empty_lines_before_a_status_line_are_refused() -> None:
    assert feed(response_reader(), [b"\r\n" + OK]) == ("refused", 400, 0)


@pytest.mark.parametrize(
    ("pieces", "status"),
    [
        ([b"GET /" + b"a" * 300], 414),  # no line end within the line limit, yet
        ([b"GET /" + b"a" * 300 + b" HTTP/1.1\r\nHost: x\r\n\r\n"], 414),  # whole
        ([b"GET / HTTP/1.1\r\nX: " + b"a" * 1100], 431),
        ([b"GET / HTTP/1.1\r\nX: " + b"a" * 1100 + b"\r\n\r\n"], 431),  # whole, in one piece
        ([b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 12 + b"\r\n"], 431),  # too many fields
        ([b"GET / HTTP/1.1\nHost: x\n\n"], 400),  # bare LF
        ([b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"], 501),
    ],
)
def test_a_request_head_is_refused_with_its_status(pieces: list[bytes], status: int) -> None:
    assert feed(request_reader(), pieces) == ("refused", status, 0)


def test_size_refusals_say_so_and_are_not_malformed() -> None:
    reader = request_reader()
    reader.add(b"GET /" + b"a" * 300)
    with pytest.raises(HeadTooLarge, match=r"^request line too long$"):
        reader.head_end()
    reader = response_reader(head_bytes=64)
    reader.add(b"HTTP/1.1 200 OK\r\nX: " + b"a" * 64 + b"\r\n\r\n")
    with pytest.raises(HeadTooLarge, match=r"^response head too large$") as info:
        reader.head_end()
    assert info.value.status == 431


def test_informational_heads_are_read_one_after_another() -> None:
    reader = response_reader()
    reader.add(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\n\r\n" + OK + b"hi")
    seen = []
    while True:
        end = reader.head_end()
        seen.append(bytes(reader.buffer[:end]).split(b"\r\n", 1)[0])
        reader.drop(end)
        if seen[-1].endswith(b"OK"):
            break
    assert seen == [b"HTTP/1.1 100 Continue", b"HTTP/1.1 103 Early Hints", b"HTTP/1.1 200 OK"]
    assert bytes(reader.buffer) == b"hi"  # the start of the body, for the chunked check


def test_the_callers_buffer_is_used_not_copied() -> None:
    buffer = bytearray(b"GET / HTTP/1.1\r\n")
    reader = RequestHeadReader(buffer, FixedLimits(1024, 256, 9))
    assert reader.head_end() == -1
    reader.add(b"Host: x\r\n\r\n")
    assert reader.head_end() == len(GET)
    assert reader.buffer is buffer and bytes(buffer) == GET


_FRAGMENTS = st.sampled_from(
    [
        b"\r\n",
        b"\r",
        b"\n",
        GET,
        OK,
        b"GET / HTTP/1.1\r\n",
        b"Host: x\r\n",
        b"X-A: " + b"a" * 40 + b"\r\n",
        b"\r\n\r\n",
        b"\x00",
        b"POST /p HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi",
        b"HTTP/1.1 100 Continue\r\n\r\n",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    data=st.lists(_FRAGMENTS, max_size=8).map(b"".join),
    points=st.lists(st.integers(min_value=0), max_size=12),
    request=st.booleans(),
)
def test_any_split_gives_the_same_result_as_whole(
    data: bytes, points: list[int], request: bool
) -> None:
    # Limits above anything generated: then every verdict is independent of the split.
    def reader() -> HeadReader:
        if request:
            return request_reader(head_bytes=4096, line_bytes=4096, header_count=100)
        return response_reader(head_bytes=4096)

    assert feed(reader(), split(data, points)) == feed(reader(), [data])


@settings(max_examples=300, deadline=None)
@given(
    data=st.lists(_FRAGMENTS, max_size=12).map(b"".join),
    points=st.lists(st.integers(min_value=0), max_size=12),
)
def test_under_tight_limits_any_split_refuses_what_whole_refuses(
    data: bytes, points: list[int]
) -> None:
    # Which limit or flaw is met first may depend on the split (a bare LF beyond the size
    # limit); whether the bytes are refused, and where a head ends, does not.
    whole = feed(request_reader(head_bytes=60, line_bytes=20, header_count=2), [data])
    pieces = feed(request_reader(head_bytes=60, line_bytes=20, header_count=2), split(data, points))
    assert whole[0] == pieces[0]
    if whole[0] == "end":
        assert whole == pieces


def test_an_over_long_request_line_is_414_whether_its_head_arrives_whole_or_not() -> None:
    # A line past the line limit inside a head past the head limit: 414 either way (the
    # admin servers read in different sizes, and must answer alike).
    head = b"GET /" + b"a" * 100 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    for pieces in ([head], [head[:70], head[70:]], [bytes([b]) for b in head]):
        assert feed(request_reader(head_bytes=60, line_bytes=20), pieces) == ("refused", 414, 0)
