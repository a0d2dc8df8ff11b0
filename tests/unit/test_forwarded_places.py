"""Where the fields a plan adds land (`core._headers.plan_request_of`): one Host, first when
we add it; one X-Forwarded-For, the client's values (from a trusted peer) then the peer's; one
X-Request-ID, the plan's; over random field lists (duplicates, any case, Connection lists
naming fields, trusted and untrusted peers, X-Request-ID variants, framing fields,
absolute-form targets, HTTP/1.0 without Host). An HTTP/1.0 request without Host once had its
X-Forwarded-For value, the peer's address added, sent as our Host. Also: a response's
Connection list drops what it names; a draw of request IDs is cut in order."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trioproxy.core import _headers
from trioproxy.core._errors import ProxyError
from trioproxy.core._headers import (
    Field,
    ForwardingRules,
    _listed_options,
    new_request_id,
    plan_request_of,
    response_fields_of,
)
from trioproxy.core._rulemodel import trusted_networks

MORE = settings(max_examples=settings().max_examples * 3, deadline=None)

_NAMES = [
    b"host",
    b"content-length",
    b"transfer-encoding",
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"upgrade",
    b"te",
    b"proxy-authorization",
    b"x-request-id",
    b"x-forwarded-for",
    b"true-client-ip",
    b"x-forwarded-proto",
    b"user-agent",
    b"referer",
    b"section-io-id",
    b"traceparent",
    b"content-type",
    b"section-io-tag",
    b"x-secret",
    b"etag",
    b"via",
]


@st.composite
def _spelled(draw: st.DrawFn, names: st.SearchStrategy[bytes]) -> bytes:
    """A name in any case (h11 keeps the case it was sent in)."""
    name = draw(names)
    flips = draw(st.lists(st.booleans(), min_size=len(name), max_size=len(name)))
    return bytes(
        c ^ 0x20 if flip and chr(c).isalpha() else c for c, flip in zip(name, flips, strict=True)
    )


_NAME = st.one_of(
    st.sampled_from(_NAMES),
    st.sampled_from([b"connection", b"x-secret", b"content-type"]),  # (more often)
    st.from_regex(rb"\Ax-[a-z]{1,3}\Z"),
)
_ID = st.one_of(
    st.just(b"abc-123"),
    st.from_regex(rb"\A[A-Za-z0-9._~:+/=@-]{1,130}\Z"),  # (past 128: malformed)
    st.sampled_from([b"", b"has space", b"\x80\xff", b"a,b"]),
)
_LISTED = st.lists(st.one_of(_spelled(_NAME), st.sampled_from([b"", b"close", b" "])), max_size=4)
_CONNECTION = st.one_of(
    st.sampled_from([b"keep-alive", b"close", b"Keep-Alive", b"upgrade", b"Upgrade"]),
    _LISTED.map(b", ".join),
    _LISTED.map(b",".join),
)
_VALUE = st.one_of(
    st.sampled_from([b"", b"0", b"12", b" 0", b"chunked", b"websocket", b"h2c, WebSocket/13"]),
    st.sampled_from([b"192.0.2.9", b"198.51.100.1, 10.1.2.3", b"example.test", b"text/html"]),
    st.binary(max_size=6),
)


@st.composite
def _field(draw: st.DrawFn) -> Field:
    name = draw(_spelled(_NAME))
    lname = name.lower()
    if lname == b"connection":
        value = draw(_CONNECTION)
    elif lname == b"x-request-id":
        value = draw(_ID)
    else:
        value = draw(_VALUE)
    return (name, lname, value)


# Plain requests as often as odd ones.
_PLAIN = st.lists(
    st.tuples(
        _spelled(st.sampled_from([b"user-agent", b"accept", b"referer", b"x-forwarded-proto"])),
        st.sampled_from([b"t/1", b"*/*", b""]),
    ).map(lambda pair: (pair[0], pair[0].lower(), pair[1])),
    max_size=5,
)
_HOST = st.lists(
    st.tuples(_spelled(st.just(b"host")), st.sampled_from([b"example.test", b"other", b""])).map(
        lambda pair: (pair[0], b"host", pair[1])
    ),
    max_size=2,
)
# What an edge proxy in front adds, and a body's length.
_EDGE = st.lists(
    st.sampled_from(
        [
            (b"X-Forwarded-For", b"x-forwarded-for", b"192.0.2.9"),
            (b"x-forwarded-for", b"x-forwarded-for", b"198.51.100.1, 10.1.2.3"),
            (b"True-Client-IP", b"true-client-ip", b"192.0.2.9"),
            (b"X-Request-ID", b"x-request-id", b"abc-123"),
            (b"Content-Length", b"content-length", b"0"),
            (b"Content-Length", b"content-length", b"12"),
        ]
    ),
    max_size=3,
)
_FIELDS = st.one_of(
    st.lists(_field(), max_size=10),
    st.tuples(_PLAIN, _EDGE).map(lambda t: [*t[0], *t[1]]),  # (no Host)
    st.tuples(_HOST, _PLAIN, st.lists(_field(), max_size=2)).map(lambda t: [*t[0], *t[1], *t[2]]),
    st.tuples(_HOST, _PLAIN, _EDGE, _PLAIN).map(lambda t: [*t[0], *t[1], *t[2], *t[3]]),
)
_RULES = st.builds(
    ForwardingRules,
    via=st.sampled_from([b"trioproxy", b""]),
    append_x_forwarded_for=st.booleans(),
    trusted_proxies=st.sampled_from(
        [None, trusted_networks(["10.0.0.0/8"]), trusted_networks(["192.0.2.0/24"])]
    ),
)


def _values(headers: list[tuple[bytes, bytes]], lname: bytes) -> list[bytes]:
    return [value for name, value in headers if name.lower() == lname]


@MORE
@given(
    fields=_FIELDS,
    method=st.sampled_from([b"GET", b"POST", b"HEAD"]),
    target=st.sampled_from([b"/", b"/a?b", b"http://example.test/x", b"HTTP://other", b"*"]),
    http_version=st.sampled_from([b"1.1", b"1.0", b"1.0"]),
    peer_trusted=st.booleans(),
    rules=_RULES,
)
def test_the_added_fields_land_in_their_places(
    fields: list[Field],
    method: bytes,
    target: bytes,
    http_version: bytes,
    peer_trusted: bool,
    rules: ForwardingRules,
) -> None:
    peer_ip = b"10.0.0.1" if peer_trusted else b"203.0.113.1"
    try:
        plan = plan_request_of(
            method,
            target,
            fields,
            http_version,
            peer_ip=peer_ip,
            rules=rules,
            upstream_authority=b"origin:80",
            max_header_count=100,
            make_request_id=lambda: b"fresh",
        )
    except ProxyError:
        return
    given_hosts = [value for _, lname, value in fields if lname == b"host"]
    if given_hosts:
        assert _values(plan.headers, b"host") == given_hosts[:1]
    else:  # (the target's authority, else the upstream's)
        assert _values(plan.headers, b"host") == [plan.host or b"origin:80"]
        assert plan.headers[0] == (b"Host", plan.host or b"origin:80")
    assert _values(plan.headers, b"x-request-id") == [plan.request_id]
    if rules.append_x_forwarded_for:
        claimed = [value for _, lname, value in fields if lname == b"x-forwarded-for"]
        believed = claimed if plan.peer_trusted else []
        assert _values(plan.headers, b"x-forwarded-for") == [b", ".join([*believed, peer_ip])]


@pytest.mark.parametrize("target", [b"/", b"http://a.test/"])
def test_the_host_added_to_an_http_1_0_request_moves_no_field_into_another(
    target: bytes,
) -> None:
    forwarded_for = (b"X-Forwarded-For", b"x-forwarded-for", b"192.0.2.9")
    request_id = (b"X-Request-ID", b"x-request-id", b"abc-123")
    for xff, xrid in ((True, True), (True, False), (False, True)):
        planned = plan_request_of(
            b"GET",
            target,
            [*[forwarded_for] * xff, *[request_id] * xrid, (b"Accept", b"accept", b"*/*")],
            b"1.0",
            peer_ip=b"10.0.0.1",
            rules=ForwardingRules(),
            upstream_authority=b"origin:80",
            max_header_count=10,
            make_request_id=lambda: b"fresh",
        )
        assert planned.headers[0] == (b"Host", b"a.test" if target != b"/" else b"origin:80")
        out = dict(planned.headers)
        assert out[b"X-Forwarded-For"] == (b"192.0.2.9, 10.0.0.1" if xff else b"10.0.0.1")
        assert out[b"X-Request-ID"] == (b"abc-123" if xrid else b"fresh")


def test_an_unusual_connection_list_drops_what_it_names_once() -> None:
    assert _listed_options([b"close", b"X-A, keep-alive"]) == {b"x-a", b"close", b"keep-alive"}
    fields = [
        (b"X-A", b"x-a", b"1"),
        (b"Connection", b"connection", b"close"),  # (the usual first: the second still counts)
        (b"Connection", b"connection", b"X-A, keep-alive"),
        (b"B", b"b", b"2"),
    ]
    out = response_fields_of(fields, b"1.1", rules=ForwardingRules(via=b""))
    assert out.headers == [(b"B", b"2")]
    assert out.lowered == [(b"B", b"b", b"2")]


def test_a_draw_of_request_ids_is_cut_into_32_digit_ids_in_order() -> None:
    _headers._drawn_ids.clear()
    first = new_request_id()
    rest = list(_headers._drawn_ids)
    digits = b"".join([*rest, first])
    assert len(rest) + 1 == _headers._IDS_PER_DRAW
    assert [digits[i : i + 32] for i in range(0, len(digits), 32)] == [*rest, first]
