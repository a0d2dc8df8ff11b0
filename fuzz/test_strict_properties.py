"""Properties of ``_strict`` alone (no I/O), against two reference parsers, h11 and llhttp.

- Everything the grammar generates passes (no false alarms on valid traffic).
- What passes, both h11 and llhttp read, and read alike (no smuggling between them).
- What fails, one of them rejects too, unless it is one of the rules where we are stricter
  than both on purpose (``STRICTER_BY_DESIGN``, each with its reason in ``_strict``).
- Fed whole or in any pieces, find_head_end and ChunkedChecker give the same answer.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from hypothesis import example, given, settings
from hypothesis import strategies as st

from trioproxy.core._chunked import ChunkedChecker
from trioproxy.core._strict import (
    FramingError,
    check_request_head,
    check_response_head,
    find_head_end,
)

from .reference import Read, h11_request, h11_response, llhttp_request, llhttp_response
from .strategies import (
    Body,
    Request,
    Response,
    bodies,
    cut,
    hostile,
    requests,
    responses,
    split_points,
)

MORE = settings(max_examples=settings().max_examples * 5)

# Rejections where h11 and llhttp may both accept: each is a deliberate rule of _strict.
STRICTER_BY_DESIGN = (
    "unsupported version",  # llhttp takes 0.9 and 2.0; h11 any 1.x
    "invalid Host",  # RFC 9112 3.2: 400 for an invalid Host value; neither checks
    "PRI method",  # RFC 9113 3.4: the h2 preface
    "Connection names",  # hop-by-hop stripping would remove framing/routing fields
    "invalid Content-Length",  # beyond 2**63-1 (llhttp: 2**64-1; h11: unbounded)
    "Transfer-Encoding in an HTTP/1.0",  # RFC 9112 6.1: faulty framing
    "unsupported Transfer-Encoding",  # "gzip, chunked": llhttp reads it; h11 501s
    "control character",  # in a response's reason phrase, which both take
    "invalid status code",  # 600..999: RFC 9110 15 says invalid; both take it
    "Transfer-Encoding in a",  # in a 1xx/204 response (RFC 9112 6.1)
    "Content-Length",  # non-zero in a 1xx/204 response (RFC 9110 8.6)
)
HEAD_LIMITS = {"max_request_line_bytes": 1 << 20, "max_header_count": 10_000}

request_bytes = requests().map(lambda r: r.render())
request_bytes_with_hops = requests(hop_by_hop=True).map(lambda r: r.render())
response_bytes = responses(hop_by_hop=True).map(lambda r: r.render())


def _verdict(check: Callable[[bytes], None], head: bytes) -> str | None:
    """None if ``check`` passes ``head``, else the FramingError's message."""
    try:
        find_head_end(head, 0)
        check(head)
    except FramingError as exc:
        return str(exc)
    return None


def _head(data: bytes) -> bytes | None:
    """The head at the start of ``data`` as find_head_end delimits it; None if there is
    none (incomplete), or find_head_end already refuses the bytes."""
    try:
        end = find_head_end(data, 0)
    except FramingError:
        return None
    return data[:end] if end >= 0 else None


def _check_request(head: bytes) -> None:
    check_request_head(head, **HEAD_LIMITS)


@given(requests(hop_by_hop=True))
@MORE
def test_generated_requests_pass(request: Request) -> None:
    head = _head(request.render())
    assert head is not None and _verdict(_check_request, head) is None


@given(responses(hop_by_hop=True))
@MORE
def test_generated_responses_pass(response: Response) -> None:
    head = _head(response.render())
    assert head is not None and _verdict(check_response_head, head) is None


def _judge_head(
    data: bytes,
    check: Callable[[bytes], None],
    read_h11: Callable[[bytes], Read | None],
    read_llhttp: Callable[[bytes], Read | None],
) -> None:
    """Passed: both parsers read the head, alike. Refused (by find_head_end early, or by the
    check on the whole head): one of them refuses too, or it is a rule STRICTER_BY_DESIGN."""
    try:
        end = find_head_end(data, 0)
    except FramingError as exc:
        why: str | None = str(exc)
        head = data
    else:
        if end < 0:
            return  # incomplete: nothing to judge yet
        head = data[:end]
        why = _verdict(check, head)
    by_h11, by_llhttp = read_h11(head), read_llhttp(head)
    if why is None:
        assert by_h11 is not None and by_llhttp is not None
        assert by_h11.start == by_llhttp.start
        assert by_h11.fields == [(n, v.strip(b" \t")) for n, v in by_llhttp.fields]
    elif by_h11 is not None and by_llhttp is not None:
        assert why.startswith(STRICTER_BY_DESIGN), why


@given(hostile(request_bytes) | hostile(request_bytes_with_hops))
@MORE
@example(b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x01b\r\n\r\n")
@example(b"POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
@example(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n")
@example(b"! ! HTTP/1.0\r\n!:\r\n\r\n")  # found by the deep profile: a target of no form
def test_request_heads_pass_only_if_both_parsers_read_them_alike(data: bytes) -> None:
    _judge_head(data, _check_request, h11_request, llhttp_request)


@given(hostile(response_bytes))
@MORE
@example(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok")
@example(b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
@example(b"HTTP/1.0 200 \x01\r\n\r\n")  # found by the deep profile: CTL in a reason phrase
def test_response_heads_pass_only_if_both_parsers_read_them_alike(data: bytes) -> None:
    _judge_head(data, check_response_head, partial(h11_response, eof=False), llhttp_response)


@given(st.binary(max_size=200) | hostile(request_bytes), split_points)
@MORE
def test_find_head_end_whole_or_in_pieces(data: bytes, points: list[int]) -> None:
    def incremental() -> int | str:
        buffer = bytearray()
        try:
            for piece in cut(data, points):
                searched = len(buffer)
                buffer += piece
                end = find_head_end(buffer, searched)
                if end >= 0:
                    return end
        except FramingError:
            return "error"
        return -1

    try:
        whole: int | str = find_head_end(data, 0)
    except FramingError:
        whole = "error"
    assert incremental() == whole


# Chunked bodies.

TE_HEAD = b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
chunked_bodies = bodies(framings=("chunked",)).map(lambda b: b.render())
CHUNKED_STRICTER_BY_DESIGN = (
    "malformed chunk-size line",  # 17+ digits with leading zeros, "a=" with no value (llhttp)
    "Content-Length in trailer",  # h11 takes it, llhttp not
    "transfer-encoding in trailer",
    "content-length in trailer",
)


def _checker_verdict(pieces: list[bytes]) -> tuple[str, str]:
    """("done" | "incomplete" | "error", the error's message)."""
    checker = ChunkedChecker()
    try:
        for piece in pieces:
            checker.feed(piece)
    except FramingError as exc:
        return "error", str(exc)
    return ("done" if checker.done else "incomplete"), ""


@given(bodies(framings=("chunked",)), split_points)
@MORE
def test_generated_chunked_bodies_pass_whole_or_in_pieces(body: Body, points: list[int]) -> None:
    data = body.render()
    assert _checker_verdict([data + b"NEXT"])[0] == "done"
    assert _checker_verdict(cut(data, points))[0] == "done"
    by_h11, by_llhttp = h11_request(TE_HEAD + data), llhttp_request(TE_HEAD + data)
    assert by_h11 is not None and by_llhttp is not None
    assert by_h11.body == by_llhttp.body == body.data


@given(hostile(chunked_bodies), split_points)
@MORE
@example(b"5\r\nhello\r\n0\r\nX: 1\n\n", [])
@example(b"5;a=\r\nhello\r\n0\r\n\r\n", [])
def test_chunked_checker_agrees_with_both_parsers(data: bytes, points: list[int]) -> None:
    verdict, why = _checker_verdict([data])
    assert _checker_verdict(cut(data, points))[0] == verdict  # whatever the pieces
    assert _checker_verdict(list(map(bytes, zip(data))))[0] == verdict  # and byte by byte
    by_h11, by_llhttp = h11_request(TE_HEAD + data), llhttp_request(TE_HEAD + data)
    if verdict == "done":
        # Passed: both parsers end the body at the same place with the same data.
        assert by_h11 is not None and by_h11.complete
        assert by_llhttp is not None and by_llhttp.complete
        assert by_h11.body == by_llhttp.body
    elif verdict == "incomplete":
        # Waiting for more: neither parser may have finished a message on these bytes.
        assert by_h11 is None or not by_h11.complete
        assert by_llhttp is None or not by_llhttp.complete
    elif by_h11 is not None and by_h11.complete and by_llhttp is not None and by_llhttp.complete:
        assert why.startswith(CHUNKED_STRICTER_BY_DESIGN), why
