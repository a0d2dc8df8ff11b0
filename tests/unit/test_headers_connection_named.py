"""The request plan and the response's fields are what they were before their fixed costs were
cut (`headers_before`, a frozen copy) where the Connection fields name the fields the planner
watches (X-Request-ID, X-Forwarded-For, True-Client-IP, traceparent, Referer, Transfer-Encoding,
TE, Upgrade, Host, Content-Length, Via, Content-Type, section-io-tag...), in any case, with
spaces, tabs and empty list elements, in one Connection field or several, before or after the
field named: the cases `test_headers_differential` does not generate."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from trioproxy.core._errors import ProxyError
from trioproxy.core._headers import Field, ForwardingRules, plan_request_of, response_fields_of
from trioproxy.core._rulemodel import CidrSet

from . import headers_before

_WATCHED = [
    b"host",
    b"content-length",
    b"transfer-encoding",
    b"te",
    b"trailer",
    b"upgrade",
    b"keep-alive",
    b"connection",
    b"proxy-connection",
    b"x-request-id",
    b"x-forwarded-for",
    b"true-client-ip",
    b"traceparent",
    b"referer",
    b"user-agent",
    b"x-forwarded-proto",
    b"section-io-id",
    b"section-io-tag",
    b"content-type",
    b"via",
    b"close",
    b"foo",
]


def _cased(name: bytes) -> st.SearchStrategy[bytes]:
    return st.sampled_from([name, name.upper(), name.title(), name.capitalize()])


names = st.sampled_from(_WATCHED).flatmap(_cased)
_SPACE = st.sampled_from([b"", b" ", b"\t", b"  "])
option_lists = st.lists(
    st.one_of(st.tuples(_SPACE, names, _SPACE).map(b"".join), st.just(b"")), max_size=4
).map(b",".join)
_VALUES = st.sampled_from(
    [b"", b"1.2.3.4", b"0123456789abcdef0123456789abcdef", b"websocket", b"chunked", b"0",
     b"example.com", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"]
)  # fmt: skip
fields = st.lists(
    st.one_of(
        st.tuples(_cased(b"connection"), option_lists),
        st.tuples(names, _VALUES),
    ),
    max_size=12,
).map(lambda pairs: [(name, name.lower(), value) for name, value in pairs])
rules = st.builds(
    ForwardingRules,
    via=st.sampled_from([b"trioproxy", b""]),
    append_x_forwarded_for=st.booleans(),
    trusted_proxies=st.sampled_from(
        [None, CidrSet((ipaddress.ip_network("10.0.0.0/8"),))]  # (the peer is not in it)
    ),
)

_PROPERTY = settings(max_examples=4000, deadline=None)


def _outcome(call: Callable[[], Any], names: tuple[str, ...]) -> object:
    try:
        result = call()
    except ProxyError as exc:
        return (type(exc).__name__, str(exc), exc.status)
    return {name: getattr(result, name) for name in names}


_PLAN_FIELDS = tuple(headers_before.RequestPlan.__dataclass_fields__)
_RESPONSE_FIELDS = ("headers", "lowered", "content_type", "section_io_tag", "chunked", "has_length")


@_PROPERTY
@given(
    method=st.sampled_from([b"GET", b"POST"]),
    target=st.sampled_from([b"/", b"http://example.com/x"]),
    fields=fields,
    http_version=st.sampled_from([b"1.1", b"1.0"]),
    rules=rules,
)
def test_a_plan_with_named_fields_is_the_plan_before(
    method: bytes, target: bytes, fields: list[Field], http_version: bytes, rules: ForwardingRules
) -> None:
    def planner(plan: Any) -> Callable[[], Any]:
        return lambda: plan(
            method,
            target,
            list(fields),
            http_version,
            peer_ip=b"127.0.0.1",
            rules=rules,
            upstream_authority=b"127.0.0.1:18080",
            max_header_count=100,
            make_request_id=lambda: b"fresh",
        )

    assert _outcome(planner(plan_request_of), _PLAN_FIELDS) == _outcome(
        planner(headers_before.plan_request_of), _PLAN_FIELDS
    )


@_PROPERTY
@given(
    fields=fields,
    rules=rules,
    request_id=st.sampled_from([b"", b"0123456789abcdef0123456789abcdef"]),
    switching=st.booleans(),
)
def test_a_responses_named_fields_are_the_fields_before(
    fields: list[Field], rules: ForwardingRules, request_id: bytes, switching: bool
) -> None:
    def fields_by(function: Any) -> Callable[[], Any]:
        return lambda: function(
            fields, b"1.1", rules=rules, request_id=request_id, switching=switching
        )

    before = list(fields)
    now = _outcome(fields_by(response_fields_of), _RESPONSE_FIELDS)
    assert fields == before
    assert now == _outcome(fields_by(headers_before.response_fields_of), _RESPONSE_FIELDS)
