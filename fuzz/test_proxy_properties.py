"""Properties of the real proxy, over loopback, with hypothesis choosing the bytes.

(a) Any bytes from a client get a 4xx (or 501, RFC 9112 6.1) or a clean close: never a 5xx
    of ours, an internal error in the log, a hang past the timeouts, or a dead server; fed
    whole and fed one byte per segment.
(b) A valid request is forwarded with method, target, end-to-end fields, body and trailers
    intact, however its bytes are cut into segments.
(c) No hop-by-hop field crosses in either direction (nor one named in Connection), and the
    origin's response reaches the client intact.
(d) The origin is the attacker: whatever it sends, the client gets a 502 or an aborted
    connection, never a hang, a crash, or a message a strict parser rejects or reads
    differently from what the origin meant.

One proxy and one origin per test module run in a background thread (``harness.Harness``);
each example opens one client connection.
"""

from __future__ import annotations

from collections.abc import Iterator

import h11
import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from tests.support import Reply

from .harness import AttackerOrigin, Harness, RecordingOrigin, read_replies
from .reference import h11_response, llhttp_response
from .strategies import (
    HOP_BY_HOP,
    Request,
    Response,
    cut,
    hostile,
    requests,
    responses,
    split_points,
)

PROBE = b"GET /probe HTTP/1.1\r\nHost: probe.test\r\n\r\n"
ADDED_BY_PROXY = frozenset({b"via", b"x-forwarded-for", b"x-request-id"})


@pytest.fixture(scope="module")
def recording() -> Iterator[tuple[Harness, RecordingOrigin]]:
    origin = RecordingOrigin()
    with Harness(origin) as harness:
        yield harness, origin


@pytest.fixture(scope="module")
def attacked() -> Iterator[tuple[Harness, AttackerOrigin]]:
    origin = AttackerOrigin()
    with Harness(origin) as harness:
        yield harness, origin


def _replies(data: bytes) -> list[Reply]:
    """The client's reading of what it got: valid HTTP, answers to GET or (failing that) HEAD."""
    try:
        return read_replies(data)
    except h11.RemoteProtocolError:
        return read_replies(data, method=b"HEAD")


def _still_healthy(harness: Harness) -> None:
    assert harness.errors() == []  # no "internal error" nor any other ERROR line
    harness.check_alive()
    probe = harness.exchange([PROBE])
    assert [r.status for r in read_replies(probe.received)] == [200], probe


# (a) client bytes


client_bytes = hostile(requests(hop_by_hop=True).map(lambda r: r.render()))


@given(client_bytes, st.booleans())
@example(b"GET / HTTP/1.1\nHost: x\n\n", False)
@example(
    b"POST / HTTP/1.1\r\nHost: x\r\nConnection: content-length\r\nContent-Length: 1\r\n\r\nx", False
)
@example(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: host\r\n\r\n", True)
@example(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", True)
def test_any_client_bytes_get_4xx_or_a_clean_close(
    recording: tuple[Harness, RecordingOrigin], data: bytes, bytewise: bool
) -> None:
    harness, origin = recording
    pieces = [data[i : i + 1] for i in range(len(data))] if bytewise else [data]
    result = harness.exchange(pieces)
    assert not result.hung, "neither answered nor closed within the timeouts"
    replies = _replies(result.received)  # raises if the proxy sent malformed HTTP
    event(f"statuses {sorted({r.status for r in replies})}" + (" reset" if result.reset else ""))
    for reply in replies:
        # 2xx: a valid request the origin answered. Ours: 4xx, or 501 for a coding we lack.
        assert reply.status < 500 or reply.status == 501, reply
    origin.take()
    _still_healthy(harness)


# (b) valid requests, any segmentation


def _forwarded_view(request: Request) -> list[tuple[bytes, bytes]]:
    return [(b"Host", request.host), *request.forwarded_fields()]


def _as_received(fields: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    skip = ADDED_BY_PROXY | {b"content-length", b"transfer-encoding"}
    return [(n, v) for n, v in fields if n.lower() not in skip]


@given(requests(), split_points)
def test_valid_requests_are_forwarded_intact_however_cut(
    recording: tuple[Harness, RecordingOrigin], request: Request, points: list[int]
) -> None:
    harness, origin = recording
    origin.take()
    result = harness.exchange(cut(request.render(), points))
    assert not result.hung
    assert [r.status for r in _replies(result.received)] == [200]
    ((seen, body, trailers),) = origin.take()
    assert (seen.method, seen.target) == (request.method, request.target)
    assert _as_received(list(seen.headers.raw_items())) == _forwarded_view(request)
    assert body == request.body.data
    assert trailers == request.body.trailers
    assert harness.errors() == []


# (c) hop-by-hop, both ways, and the response intact


@given(
    requests(hop_by_hop=True).filter(lambda r: r.method != b"HEAD"),
    responses(hop_by_hop=True),
)
def test_no_hop_by_hop_field_crosses_and_responses_arrive_intact(
    recording: tuple[Harness, RecordingOrigin], request: Request, response: Response
) -> None:
    harness, origin = recording
    origin.take()
    origin.script = response.render()
    try:
        result = harness.exchange([request.render()])
    finally:
        origin.script = None
    assert not result.hung
    ((seen, _, _),) = origin.take()
    upstream_names = {n.lower() for n, _ in seen.headers.raw_items()}
    framing = {b"transfer-encoding"} if request.body.framing == "chunked" else set()
    assert upstream_names & request.dropped_names() <= framing
    assert _as_received(list(seen.headers.raw_items())) == _forwarded_view(request)

    ((reply),) = _replies(result.received)
    response_dropped = _dropped(response.hop_fields)
    assert reply.status == response.status
    assert reply.body == response.body.data
    names = {n.lower() for n, _ in reply.headers}
    assert names & (response_dropped - {b"transfer-encoding", b"connection"}) == set()
    assert all(v.lower() == b"close" for n, v in reply.headers if n.lower() == b"connection")
    assert all(v == b"chunked" for n, v in reply.headers if n.lower() == b"transfer-encoding")
    expected = [(n, v) for n, v in response.fields if n.lower() not in response_dropped]
    assert _as_received(reply.headers) == expected
    # Trailers come through minus hop-by-hop ones (none are generated).
    # Trailer fields the head's Connection names are hop-by-hop too (RFC 9110 7.6.1).
    assert reply.trailers == [
        (n, v) for n, v in response.body.trailers if n.lower() not in response_dropped
    ]
    assert harness.errors() == []


def _dropped(hop_fields: list[tuple[bytes, bytes]]) -> frozenset[bytes]:
    listed = {
        option.strip().lower()
        for name, value in hop_fields
        if name.lower() == b"connection"
        for option in value.split(b",")
    }
    return HOP_BY_HOP | listed


# (d) the origin is the attacker


upstream_bytes = hostile(responses(hop_by_hop=True).map(lambda r: r.render()))


@given(upstream_bytes)
@settings(max_examples=settings().max_examples * 2)
@example(b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok")
@example(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX: 1\n\n")
@example(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok")
@example(b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
@example(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort")
@example(b"")
@example(b"HTTP/1.1 200 OK\r\nContent-Le")  # closed mid-head: once a busy loop (fixed)
def test_whatever_the_origin_sends_the_client_gets_502_or_an_abort(
    attacked: tuple[Harness, AttackerOrigin], data: bytes
) -> None:
    harness, origin = attacked
    origin.script = data
    result = harness.exchange([b"GET /attack HTTP/1.1\r\nHost: shop.test\r\n\r\n"])
    assert not result.hung
    replies = read_replies(result.received)  # a strict client never sees malformed HTTP
    assert llhttp_response(result.received) is not None or not replies  # nor does llhttp
    assert len(replies) <= 1
    event(f"status {replies[0].status}" if replies else "aborted")
    if replies and replies[0].status not in (502, 504):
        # Passed on: the origin's bytes were one response both parsers read the same way,
        # and it is the one the client got.
        (reply,) = replies
        by_h11, by_llhttp = h11_response(data), llhttp_response(data)
        assert by_h11 is not None
        assert by_h11.start == (b"%d" % reply.status,)
        assert by_h11.body == reply.body
        if by_llhttp is not None and by_llhttp.complete:
            assert by_llhttp.start == by_h11.start and by_llhttp.body == by_h11.body
        else:  # llhttp cannot see the close: only a close-delimited body may be unfinished
            assert by_llhttp is not None, "llhttp rejects what reached the client"
    origin.script = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    _still_healthy(harness)
