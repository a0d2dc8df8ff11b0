"""The header functions' passes in C (`plan_request_of`'s plain-request path, `response_fields_of`,
`engine._h11.sendable`, the request-ID cut) give exactly what the per-field loops they replaced
gave: the loops are the reference here (`_plan_request_loop`, still the plan of any request
with a field to drop, merge or replace; `_old_response_fields_of` and `_old_sendable`, copied
from before). Random field lists: duplicates, any case, Connection lists naming other fields,
X-Forwarded-For and True-Client-IP from trusted and untrusted peers, X-Request-ID well-formed,
malformed and repeated, framing fields, absolute-form targets, HTTP/1.0 without Host."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trioproxy.core import _headers
from trioproxy.core._errors import ProxyError, UpstreamError
from trioproxy.core._headers import (
    HOP_BY_HOP,
    Field,
    ForwardingRules,
    Headers,
    RequestPlan,
    ResponseFields,
    _listed_options,
    _plan_request_loop,
    connection_options,
    new_request_id,
    plan_request_of,
    response_fields_of,
)
from trioproxy.core._rulemodel import trusted_networks
from trioproxy.engine._h11 import Fields, sendable

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


# A plain request (the fast path) as often as an odd one.
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
# What an edge proxy in front adds, and a body's length (the plain path takes each once).
_EDGE = st.lists(
    st.sampled_from(
        [
            (b"X-Forwarded-For", b"x-forwarded-for", b"192.0.2.9"),
            (b"x-forwarded-for", b"x-forwarded-for", b"198.51.100.1, 10.1.2.3"),
            (b"True-Client-IP", b"true-client-ip", b"192.0.2.9"),
            (b"Content-Length", b"content-length", b"0"),
            (b"Content-Length", b"content-length", b"12"),
        ]
    ),
    max_size=3,
)
_FIELDS = st.one_of(
    st.lists(_field(), max_size=10),
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


def _outcome(plan: Callable[[], object]) -> object:
    try:
        return plan()
    except ProxyError as exc:
        return (type(exc), str(exc), exc.status)


def _ids() -> Callable[[], bytes]:
    drawn = iter(range(1000))
    return lambda: b"%032x" % next(drawn)


@MORE
@given(
    fields=_FIELDS,
    method=st.sampled_from([b"GET", b"POST", b"HEAD", b"CONNECT"]),
    target=st.sampled_from([b"/", b"/a?b", b"http://example.test/x", b"HTTP://other", b"*"]),
    http_version=st.sampled_from([b"1.1", b"1.0"]),
    peer_ip=st.sampled_from([b"10.0.0.1", b"192.0.2.1"]),
    rules=_RULES,
    upstream_authority=st.sampled_from([b"origin:80", b"bad host"]),
    max_header_count=st.integers(4, 12),
)
def test_a_plan_is_the_general_loops_plan(
    fields: list[Field],
    method: bytes,
    target: bytes,
    http_version: bytes,
    peer_ip: bytes,
    rules: ForwardingRules,
    upstream_authority: bytes,
    max_header_count: int,
) -> None:
    arguments: dict[str, Any] = {
        "peer_ip": peer_ip,
        "rules": rules,
        "upstream_authority": upstream_authority,
        "max_header_count": max_header_count,
    }
    fast_ids, loop_ids = _ids(), _ids()
    fast = _outcome(
        lambda: plan_request_of(
            method, target, fields, http_version, **arguments, make_request_id=fast_ids
        )
    )
    loop = _outcome(
        lambda: _plan_request_loop(
            method, target, fields, http_version, **arguments, make_request_id=loop_ids
        )
    )
    assert fast == loop
    assert fast_ids() == loop_ids()  # (as many IDs drawn)


def test_the_plain_path_is_taken_and_a_special_field_takes_the_loop() -> None:
    """The property above compares both paths only if both run: here each does."""
    plain = [
        (b"Host", b"host", b"h"),
        (b"User-Agent", b"user-agent", b"t"),
        (b"content-length", b"content-length", b"5"),
        (b"X-Forwarded-For", b"x-forwarded-for", b"192.0.2.9"),  # (as an edge proxy adds them)
        (b"True-Client-IP", b"true-client-ip", b"192.0.2.9"),
    ]
    arguments: dict[str, Any] = {
        "peer_ip": b"10.0.0.1",
        "upstream_authority": b"origin:80",
        "max_header_count": 100,
    }
    trusted = ForwardingRules(trusted_proxies=trusted_networks(["10.0.0.0/8"]))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_headers, "_plan_request_loop", _refused)
        for rules in (ForwardingRules(), trusted):
            plan = plan_request_of(b"POST", b"/", plain, b"1.1", rules=rules, **arguments)
            assert plan.body is _headers.BodyKind.LENGTH
            assert plan.noted[b"user-agent"] == b"t"
            assert (b"X-Forwarded-For", b"192.0.2.9, 10.0.0.1") in plan.headers
        for special in (b"X-Request-ID", b"X-Forwarded-For", b"Connection", b"Content-Length"):
            with pytest.raises(AssertionError, match="the loop"):
                plan_request_of(
                    b"GET",
                    b"/",
                    [*plain, (special, special.lower(), b"1")],
                    b"1.1",
                    rules=trusted,
                    **arguments,
                )
        untrusted = ForwardingRules(trusted_proxies=trusted_networks(["192.0.2.0/24"]))
        with pytest.raises(AssertionError, match="the loop"):  # (its claims are dropped)
            plan_request_of(b"GET", b"/", plain, b"1.1", rules=untrusted, **arguments)


@pytest.mark.parametrize("plan", [plan_request_of, _plan_request_loop])
@pytest.mark.parametrize("target", [b"/", b"http://a.test/"])
def test_the_host_added_to_an_http_1_0_request_moves_no_field_into_another(
    plan: Callable[..., RequestPlan], target: bytes
) -> None:
    forwarded_for = (b"X-Forwarded-For", b"x-forwarded-for", b"192.0.2.9")
    request_id = (b"X-Request-ID", b"x-request-id", b"abc-123")
    for xff, xrid in ((True, True), (True, False), (False, True)):
        planned = plan(
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


def _refused(*args: object, **kwargs: object) -> None:
    raise AssertionError("the loop planned it")


# --- Responses ---------------------------------------------------------------------------------

_READ_IN_RESPONSES = HOP_BY_HOP | {
    b"content-length",
    b"content-type",
    b"section-io-tag",
    b"x-request-id",
}


def _old_response_fields_of(
    fields: Iterable[Field],
    http_version: bytes,
    *,
    rules: ForwardingRules,
    request_id: bytes = b"",
    switching: bool = False,
) -> ResponseFields:
    """`response_fields_of` as it was: one Python pass over the fields."""
    out: Headers = []
    lowered: list[Field] = []
    content_type = section_io_tag = b""
    has_length = chunked = False
    listed: list[bytes] = []
    for item in fields:
        name, lname, value = item
        if lname not in _READ_IN_RESPONSES:
            out.append((name, value))
            lowered.append(item)
            continue
        if lname == b"content-length":
            has_length = True
        elif lname == b"transfer-encoding":
            chunked = True
        elif lname == b"content-type":
            content_type = content_type or value
        elif lname == b"section-io-tag":
            section_io_tag = section_io_tag or value
        elif lname == b"connection":
            listed.append(value)
        if lname not in HOP_BY_HOP and not (request_id and lname == b"x-request-id"):
            out.append((name, value))
            lowered.append(item)
    if has_length and chunked:
        raise UpstreamError("upstream response has both Content-Length and Transfer-Encoding")
    if listed and (len(listed) > 1 or listed[0].lower() not in {b"keep-alive", b"close"}):
        options = connection_options((b"connection", value) for value in listed)
        if options - HOP_BY_HOP:
            lowered = [item for item in lowered if item[1] not in options]
            out = [(name, value) for name, _, value in lowered]
    if switching:
        out += [(b"Connection", b"upgrade"), (b"Upgrade", b"websocket")]
        lowered += [
            (b"Connection", b"connection", b"upgrade"),
            (b"Upgrade", b"upgrade", b"websocket"),
        ]
    if request_id:
        out.append((b"X-Request-ID", request_id))
        lowered.append((b"X-Request-ID", b"x-request-id", request_id))
    if rules.via:
        via = rules.via_value(http_version)
        out.append((b"Via", via))
        lowered.append((b"Via", b"via", via))
    return ResponseFields(out, lowered, content_type, section_io_tag, chunked, has_length)


def _response_outcome(respond: Callable[[], ResponseFields]) -> object:
    try:
        fields = respond()
    except UpstreamError as exc:
        return (type(exc), str(exc))
    return {name: getattr(fields, name) for name in ResponseFields.__slots__}


@MORE
@given(
    fields=st.lists(_field(), max_size=12),
    http_version=st.sampled_from([b"1.1", b"1.0"]),
    rules=_RULES,
    request_id=st.sampled_from([b"", b"0123456789abcdef0123456789abcdef"]),
    switching=st.booleans(),
)
def test_response_fields_are_the_old_loops(
    fields: list[Field],
    http_version: bytes,
    rules: ForwardingRules,
    request_id: bytes,
    switching: bool,
) -> None:
    given_fields = list(fields)
    arguments: dict[str, Any] = {
        "rules": rules,
        "request_id": request_id,
        "switching": switching,
    }
    new = _response_outcome(lambda: response_fields_of(fields, http_version, **arguments))
    assert fields == given_fields  # (h11's own list: never changed)
    assert new == _response_outcome(
        lambda: _old_response_fields_of(iter(fields), http_version, **arguments)
    )
    # Any iterable of fields, as before.
    assert new == _response_outcome(
        lambda: response_fields_of(iter(fields), http_version, **arguments)
    )


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
    assert _old_response_fields_of(fields, b"1.1", rules=ForwardingRules(via=b"")).headers == [
        (b"B", b"2")
    ]


# --- sendable, request IDs ---------------------------------------------------------------------


def _old_sendable(headers: Iterable[tuple[bytes, bytes]]) -> Any:
    return Fields([(name, name.lower(), value) for name, value in headers])


@given(st.lists(st.tuples(_spelled(_NAME), _VALUE), max_size=10))
def test_sendable_builds_the_fields_the_loop_built(pairs: list[tuple[bytes, bytes]]) -> None:
    for given_as in (pairs, tuple(pairs)):
        fields = sendable(given_as)
        assert fields._full_items == _old_sendable(pairs)._full_items
        assert type(fields._full_items) is list


def test_a_draw_of_request_ids_is_cut_into_32_digit_ids_in_order() -> None:
    _headers._drawn_ids.clear()
    first = new_request_id()
    rest = list(_headers._drawn_ids)
    digits = b"".join([*rest, first])
    assert len(rest) + 1 == _headers._IDS_PER_DRAW
    assert [digits[i : i + 32] for i in range(0, len(digits), 32)] == [*rest, first]
