"""The request plan and the response's fields are, for every head, what they were before their
fixed costs were cut (`headers_before`, a frozen copy): random field lists with duplicates,
names in odd case, Connection fields naming other fields, X-Forwarded-For and True-Client-IP
from trusted and untrusted peers, X-Request-ID variants, HTTP/1.0 without Host, absolute-form
targets, WebSocket upgrades and the 101's switch, with and without a request ID and Via."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from trioproxy.core._errors import ProxyError
from trioproxy.core._headers import (
    Field,
    ForwardingRules,
    plan_request_of,
    response_fields,
    response_fields_of,
)
from trioproxy.core._rulemodel import CidrSet

from . import headers_before

_NAMES = [
    b"Host",
    b"host",
    b"HOST",
    b"Connection",
    b"connection",
    b"Keep-Alive",
    b"TE",
    b"Trailer",
    b"Transfer-Encoding",
    b"Upgrade",
    b"Proxy-Connection",
    b"Proxy-Authorization",
    b"Content-Length",
    b"content-length",
    b"Content-Type",
    b"X-Request-ID",
    b"x-request-id",
    b"X-Forwarded-For",
    b"x-forwarded-for",
    b"True-Client-IP",
    b"Referer",
    b"User-Agent",
    b"X-Forwarded-Proto",
    b"section-io-id",
    b"section-io-tag",
    b"traceparent",
    b"Close",
    b"Foo",
    b"foo",
    b"Accept",
    b"Cookie",
    b"Date",
    b"ETag",
    b"Expect",
]
_VALUES = [
    b"",
    b"keep-alive",
    b"Keep-Alive",
    b"close",
    b"Close",
    b"CLOSE",
    b"foo",
    b"Foo, close",
    b" keep-alive , foo ,",
    b"host, content-length",
    b"upgrade",
    b"Upgrade, keep-alive",
    b"websocket",
    b"WebSocket/13, h2c",
    b"h2c",
    b"chunked",
    b"0",
    b"12",
    b" 0",
    b"abc-123",
    b"0123456789abcdef0123456789abcdef",
    b"bad id!",
    b"x" * 129,
    b"1.2.3.4",
    b"1.2.3.4, 5.6.7.8",
    b"example.com",
    b"example.com:8080",
    b"text/html",
]

fields_lists = st.lists(
    st.tuples(st.sampled_from(_NAMES), st.sampled_from(_VALUES)).map(
        lambda pair: (pair[0], pair[0].lower(), pair[1])
    ),
    max_size=14,
)
forwarding_rules = st.builds(
    ForwardingRules,
    via=st.sampled_from([b"trioproxy", b"", b"edge"]),
    append_x_forwarded_for=st.booleans(),
    trusted_proxies=st.sampled_from(
        [
            None,
            CidrSet((ipaddress.ip_network("10.0.0.0/8"),)),  # the peer is not in it
            CidrSet((ipaddress.ip_network("127.0.0.0/8"),)),  # the peer is in it
        ]
    ),
)
versions = st.sampled_from([b"1.1", b"1.0"])

_PROPERTY = settings(max_examples=3000, deadline=None)


def _outcome(call: Callable[[], Any], fields: tuple[str, ...]) -> object:
    """What a call gave: the named attributes of its result, or the error it raised."""
    try:
        result = call()
    except ProxyError as exc:
        return (type(exc).__name__, str(exc), exc.status)
    return {name: getattr(result, name) for name in fields}


_PLAN_FIELDS = tuple(headers_before.RequestPlan.__dataclass_fields__)


def _fields(*pairs: tuple[bytes, bytes]) -> list[Field]:
    return [(name, name.lower(), value) for name, value in pairs]


@_PROPERTY
@given(
    method=st.sampled_from([b"GET", b"POST", b"HEAD", b"CONNECT", b"PATCH"]),
    target=st.sampled_from(
        [b"/", b"/a?b", b"http://example.com/x", b"http://Example.com:8080", b"*", b"ftp://a/"]
    ),
    fields=fields_lists,
    http_version=versions,
    rules=forwarding_rules,
    authority=st.sampled_from([b"127.0.0.1:18080", b"bad host"]),
    max_header_count=st.sampled_from([100, 3]),
)
# A Connection field that names a field before it, and one naming "close".
@example(b"GET", b"/", _fields((b"Foo", b"1"), (b"Host", b"a"), (b"Connection", b"foo")),
         b"1.1", ForwardingRules(), b"a", 100)  # fmt: skip
@example(b"GET", b"/", _fields((b"Host", b"a"), (b"Close", b""), (b"Connection", b"CLOSE")),
         b"1.1", ForwardingRules(), b"a", 100)  # fmt: skip
def test_a_plan_is_the_plan_before(
    method: bytes,
    target: bytes,
    fields: list[Field],
    http_version: bytes,
    rules: ForwardingRules,
    authority: bytes,
    max_header_count: int,
) -> None:
    def planner(plan: Any) -> Callable[[], Any]:
        return lambda: plan(
            method,
            target,
            list(fields),
            http_version,
            peer_ip=b"127.0.0.1",
            rules=rules,
            upstream_authority=authority,
            max_header_count=max_header_count,
            make_request_id=lambda: b"fresh",
        )

    assert _outcome(planner(plan_request_of), _PLAN_FIELDS) == _outcome(
        planner(headers_before.plan_request_of), _PLAN_FIELDS
    )


_RESPONSE_FIELDS = ("headers", "lowered", "content_type", "section_io_tag", "chunked", "has_length")


@_PROPERTY
@given(
    fields=fields_lists,
    http_version=versions,
    rules=forwarding_rules,
    request_id=st.sampled_from([b"", b"0123456789abcdef0123456789abcdef"]),
    switching=st.booleans(),
)
# A lone Connection: close, in any case, leaves a field named "close" (as it always did).
@example(_fields((b"Connection", b"CLOSE"), (b"Close", b"")), b"1.1", ForwardingRules(), b"", False)
@example(_fields((b"Close", b""), (b"Connection", b"close")), b"1.1", ForwardingRules(), b"", False)
@example(
    _fields((b"Foo", b""), (b"Connection", b"close, foo")), b"1.1", ForwardingRules(), b"", False
)
def test_a_responses_fields_are_the_fields_before(
    fields: list[Field],
    http_version: bytes,
    rules: ForwardingRules,
    request_id: bytes,
    switching: bool,
) -> None:
    def fields_by(function: Any) -> Callable[[], Any]:
        return lambda: function(
            fields, http_version, rules=rules, request_id=request_id, switching=switching
        )

    before = list(fields)
    now = _outcome(fields_by(response_fields_of), _RESPONSE_FIELDS)
    assert fields == before  # (h11's own list: the body relay reads it again)
    assert now == _outcome(fields_by(headers_before.response_fields_of), _RESPONSE_FIELDS)


@given(fields=fields_lists, request_id=st.sampled_from([b"", b"id"]))
def test_a_responses_pairs_are_made_once_and_are_its_fields(
    fields: list[Field], request_id: bytes
) -> None:
    pairs = [(name, value) for name, _, value in fields]
    try:
        out = response_fields(pairs, b"1.1", rules=ForwardingRules(), request_id=request_id)
    except ProxyError:
        return
    assert out.headers is out.headers
    assert out.headers == [(name, value) for name, _, value in out.lowered]
