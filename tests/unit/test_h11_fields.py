"""Header fields sent as known valid (`engine._h11.sendable`, events built with
``_parsed=True``): h11 neither checks nor normalises them again, so they must give the same
events and the same bytes as h11's validating constructors. This leans on a private
interface of both parsers (``_headers.Headers`` of (name, lower-case name, value) triples):
these tests fail first if either parser changes it. The properties then hold it for whatever
a parser, `response_fields` / `plan_request`, the configuration's header edits and the hooks'
let through."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from trioproxy.config._ruleactions import _assignments, _removals
from trioproxy.config._rulevalues import _Invalid
from trioproxy.core._errors import ClientError, UpstreamError
from trioproxy.core._headers import (
    ForwardingRules,
    plan_request,
    response_fields,
    response_fields_of,
)
from trioproxy.core._rulemodel import HeaderOp, OpKind, apply_header_ops
from trioproxy.engine._h11 import END_OF_MESSAGE, Fields, h11, sendable
from trioproxy.hooks._api import Exchange, HookError, Request

Pairs = list[tuple[bytes, bytes]]

PARSERS = [
    pytest.param(importlib.import_module(name), id=name)
    for name in ("h11", "h11_mypyc")
    if importlib.util.find_spec(name) is not None
]

FIELDS = [
    (b"Server", b"nginx"),
    (b"Content-Type", b"text/html; charset=utf-8"),
    (b"content-length", b"12"),
    (b"X-Odd", b"a\tb \x80\xff c"),  # inner whitespace and obs-text are valid
    (b"Empty", b""),
    (b"Set-Cookie", b"a=1"),
    (b"Set-Cookie", b"b=2"),
]


def _fast(parser: ModuleType, pairs: Sequence[tuple[bytes, bytes]]) -> Any:
    """What `sendable` builds, with ``parser``'s class (the proxy uses the one it chose)."""
    fields = importlib.import_module(parser.__name__ + "._headers").Headers
    return fields([(name, name.lower(), value) for name, value in pairs])


def _response_bytes(parser: ModuleType, *events: Any, method: bytes = b"GET") -> bytes:
    conn = parser.Connection(parser.SERVER)
    conn.receive_data(b"%s / HTTP/1.1\r\nHost: x\r\n\r\n" % method)
    assert type(conn.next_event()).__name__ == "Request"
    assert type(conn.next_event()).__name__ == "EndOfMessage"
    return b"".join(conn.send(event) or b"" for event in events)


def _request_bytes(parser: ModuleType, event: Any) -> bytes:
    data = parser.Connection(parser.CLIENT).send(event)
    assert data is not None
    return bytes(data)


def test_sendable_builds_the_chosen_parsers_fields() -> None:
    fields = sendable([(b"Content-Type", b"a/b"), (b"X-ID", b"1")])
    assert isinstance(fields, Fields)
    assert fields._full_items == [
        (b"Content-Type", b"content-type", b"a/b"),
        (b"X-ID", b"x-id", b"1"),
    ]
    assert fields.raw_items() == [(b"Content-Type", b"a/b"), (b"X-ID", b"1")]
    assert list(fields) == [(b"content-type", b"a/b"), (b"x-id", b"1")]


@pytest.mark.parametrize("parser", PARSERS)
def test_a_response_built_fast_is_the_validated_one(parser: ModuleType) -> None:
    slow = parser.Response(status_code=200, headers=FIELDS, reason=b"OK")
    fast = parser.Response(
        status_code=200, headers=_fast(parser, FIELDS), reason=b"OK", _parsed=True
    )
    assert fast == slow
    assert fast.headers.raw_items() == slow.headers.raw_items() == FIELDS
    assert _response_bytes(parser, fast) == _response_bytes(parser, slow)
    # h11 rewrites the head it sends when it frames the body itself (chunked), or closes
    informational = parser.InformationalResponse(
        status_code=103, headers=_fast(parser, FIELDS[:2]), _parsed=True
    )
    assert informational == parser.InformationalResponse(status_code=103, headers=FIELDS[:2])


@pytest.mark.parametrize("parser", PARSERS)
def test_a_chunked_response_with_trailers_built_fast_sends_the_same_bytes(
    parser: ModuleType,
) -> None:
    head = [(b"Transfer-Encoding", b"chunked"), (b"Connection", b"close")]
    trailers = [(b"X-Checksum", b"abc")]
    fast = (
        parser.Response(status_code=200, headers=_fast(parser, head), reason=b"OK", _parsed=True),
        parser.Data(data=b"hello"),
        parser.EndOfMessage(headers=_fast(parser, trailers), _parsed=True),
    )
    slow = (
        parser.Response(status_code=200, headers=head, reason=b"OK"),
        parser.Data(data=b"hello"),
        parser.EndOfMessage(headers=trailers),
    )
    assert fast[2] == slow[2]
    assert _response_bytes(parser, *fast) == _response_bytes(parser, *slow)
    assert b"0\r\nX-Checksum: abc\r\n\r\n" in _response_bytes(parser, *fast)


@pytest.mark.parametrize("parser", PARSERS)
def test_a_request_built_fast_is_the_validated_one(parser: ModuleType) -> None:
    fields = [(b"Host", b"example.test"), *FIELDS[:2], (b"Transfer-Encoding", b"chunked")]
    slow = parser.Request(method=b"POST", target=b"/a?b", headers=fields)
    fast = parser.Request(
        method=b"POST", target=b"/a?b", headers=_fast(parser, fields), _parsed=True
    )
    assert fast == slow
    assert _request_bytes(parser, fast) == _request_bytes(parser, slow)


@pytest.mark.parametrize("parser", PARSERS)
def test_the_fast_request_still_checks_the_target_and_the_host(parser: ModuleType) -> None:
    with pytest.raises(parser.LocalProtocolError):
        parser.Request(
            method=b"GET", target=b"/a b", headers=_fast(parser, [(b"Host", b"x")]), _parsed=True
        )
    with pytest.raises(parser.LocalProtocolError):
        parser.Request(method=b"GET", target=b"/", headers=_fast(parser, []), _parsed=True)


@pytest.mark.parametrize("parser", PARSERS)
def test_one_end_of_message_serves_every_message(parser: ModuleType) -> None:
    end = parser.EndOfMessage()
    first = _response_bytes(
        parser, parser.Response(status_code=200, headers=[(b"Content-Length", b"0")]), end
    )
    again = _response_bytes(
        parser, parser.Response(status_code=200, headers=[(b"Content-Length", b"0")]), end
    )
    assert first == again
    assert end == parser.EndOfMessage() and not end.headers
    with pytest.raises(AttributeError):  # frozen: nobody can change the shared one
        end.headers = _fast(parser, [(b"X", b"y")])


def test_the_shared_end_of_message_is_the_chosen_parsers() -> None:
    assert isinstance(END_OF_MESSAGE, h11.EndOfMessage) and not END_OF_MESSAGE.headers


# --- Properties: whatever gets through the checks sends the same bytes both ways ---------------

_NAMES = st.from_regex(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,12}", fullmatch=True)
_FIELD_NAMES = _NAMES.map(str.encode)
# Values as peers send them: any byte but CR and LF (the parser refuses what it must).
_RAW_VALUES = st.binary(max_size=20).map(lambda v: v.replace(b"\r", b"").replace(b"\n", b""))
_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
_EDITS = st.lists(
    st.tuples(
        st.sampled_from(list(OpKind)), st.one_of(_NAMES, st.sampled_from(["Host", "Via"])), _TEXT
    ),
    max_size=4,
)
_PROPERTY = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.filter_too_much]
)


def _parsed_head(parser: ModuleType, start: bytes, fields: Pairs, *, client: bool) -> Any:
    """What ``parser`` makes of a head with these fields (or nothing, if it refuses it)."""
    conn = parser.Connection(parser.SERVER if client else parser.CLIENT)
    if not client:
        conn.send(parser.Request(method=b"GET", target=b"/", headers=[(b"Host", b"x")]))
        conn.send(parser.EndOfMessage())
    block = b"".join(b"%s: %s\r\n" % field for field in fields)
    conn.receive_data(start + block + b"\r\n")
    try:
        return conn.next_event()
    except parser.RemoteProtocolError:
        return None


def _config_edits(edits: list[tuple[OpKind, str, str]], *, request: bool) -> list[HeaderOp] | None:
    """The edits the configuration accepts, as ops; None if it refuses one."""
    ops: list[HeaderOp] = []
    try:
        for kind, name, value in edits:
            if kind is OpKind.REMOVE:
                ops += _removals([name], request=request)
            else:
                ops += _assignments({name: value}, kind, request=request)
    except _Invalid:
        return None
    return ops


def _hook_edits(edits: list[tuple[OpKind, str, str]], *, request: bool) -> list[HeaderOp] | None:
    """The edits a hook may ask for, as ops; None if the hooks' API refuses one."""
    exchange = Exchange(Request("GET", "/", "/", (), "1.2.3.4", "http", "id"))
    side = "request" if request else "response"
    try:
        for kind, name, value in edits:
            if kind is OpKind.REMOVE:
                getattr(exchange, f"remove_{side}_header")(name)
            else:
                getattr(exchange, f"{kind.value}_{side}_header")(name, value)
    except HookError:
        return None
    return list(exchange._request_ops if request else exchange._response_ops)


def _edited(fields: Pairs, config: list[HeaderOp] | None, hooks: list[HeaderOp] | None) -> Pairs:
    assume(config is not None and hooks is not None)
    assert config is not None and hooks is not None
    return apply_header_ops(apply_header_ops(fields, config), hooks)


@pytest.mark.parametrize("parser", PARSERS)
@_PROPERTY
@given(
    fields=st.lists(st.tuples(_FIELD_NAMES, _RAW_VALUES), max_size=8),
    config=_EDITS,
    hooks=_EDITS,
    close=st.booleans(),
    method=st.sampled_from([b"GET", b"HEAD"]),
)
def test_a_forwarded_response_head_sends_the_same_bytes_both_ways(
    parser: ModuleType,
    fields: Pairs,
    config: list[tuple[OpKind, str, str]],
    hooks: list[tuple[OpKind, str, str]],
    close: bool,
    method: bytes,
) -> None:
    response = _parsed_head(parser, b"HTTP/1.1 200 OK\r\n", fields, client=False)
    assume(type(response).__name__ == "Response")
    try:
        # (As the exchange does: from h11's own fields, their lower-case names included.)
        out = response_fields_of(
            response.headers._full_items, b"1.1", rules=ForwardingRules(), request_id=b"0" * 32
        )
    except UpstreamError:
        return
    # Unedited, the fields go out as `lowered`: the same fields, lower-case names added.
    assert out.lowered == [(name, name.lower(), value) for name, value in out.headers]
    assert (
        out.headers
        == response_fields(
            response.headers.raw_items(), b"1.1", rules=ForwardingRules(), request_id=b"0" * 32
        ).headers
    )
    headers = _edited(
        out.headers, _config_edits(config, request=False), _hook_edits(hooks, request=False)
    )
    if close:
        headers.append((b"Connection", b"close"))
    slow = parser.Response(status_code=200, headers=headers, reason=b"OK")
    fast = parser.Response(
        status_code=200, headers=_fast(parser, headers), reason=b"OK", _parsed=True
    )
    assert fast == slow
    assert _response_bytes(parser, fast, method=method) == _response_bytes(
        parser, slow, method=method
    )


@pytest.mark.parametrize("parser", PARSERS)
@_PROPERTY
@given(
    fields=st.lists(st.tuples(_FIELD_NAMES, _RAW_VALUES), max_size=8),
    config=_EDITS,
    hooks=_EDITS,
)
def test_a_forwarded_request_head_sends_the_same_bytes_both_ways(
    parser: ModuleType,
    fields: Pairs,
    config: list[tuple[OpKind, str, str]],
    hooks: list[tuple[OpKind, str, str]],
) -> None:
    request = _parsed_head(
        parser, b"GET /p?q HTTP/1.1\r\n", [(b"Host", b"example.test"), *fields], client=True
    )
    assume(type(request).__name__ == "Request")
    try:
        plan = plan_request(
            request.method,
            request.target,
            request.headers.raw_items(),
            request.http_version,
            peer_ip=b"192.0.2.1",
            rules=ForwardingRules(),
            upstream_authority=b"origin:80",
            max_header_count=100,
        )
    except ClientError:
        return
    headers = _edited(
        plan.headers, _config_edits(config, request=True), _hook_edits(hooks, request=True)
    )
    slow = parser.Request(method=request.method, target=plan.target, headers=headers)
    fast = parser.Request(
        method=request.method, target=plan.target, headers=_fast(parser, headers), _parsed=True
    )
    assert fast == slow
    assert _request_bytes(parser, fast) == _request_bytes(parser, slow)


@pytest.mark.parametrize("authority", [b"bad host:80", b"a\r\nInjected: 1"])
def test_an_upstream_address_that_cannot_be_a_host_is_refused_not_sent(authority: bytes) -> None:
    with pytest.raises(UpstreamError, match="cannot be a Host"):
        plan_request(
            b"GET",
            b"/",
            [],
            b"1.0",
            peer_ip=b"192.0.2.1",
            rules=ForwardingRules(),
            upstream_authority=authority,
            max_header_count=100,
        )


@pytest.mark.parametrize("switching", [False, True])
def test_the_lowered_fields_are_the_clients_fields_whatever_is_dropped_or_added(
    switching: bool,
) -> None:
    origin = [
        (b"X-Foo", b"1"),
        (b"Connection", b"X-Foo, close"),
        (b"Keep-Alive", b"timeout=5"),
        (b"X-Request-ID", b"theirs"),
        (b"ETag", b'"e"'),
    ]
    out = response_fields_of(
        [(name, name.lower(), value) for name, value in origin],
        b"1.1",
        rules=ForwardingRules(),
        request_id=b"ours",
        switching=switching,
    )
    assert out.lowered == [(name, name.lower(), value) for name, value in out.headers]
    assert [name for name, _ in out.headers] == [
        b"ETag",
        *([b"Connection", b"Upgrade"] if switching else []),
        b"X-Request-ID",
        b"Via",
    ]
