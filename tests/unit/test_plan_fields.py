"""`plan_request_of` reads a request's fields as h11 holds them (`core._headers.Field`: name as
spelled, lower-case name, value, in ``Headers._full_items``), so that no name is lower-cased
twice. That is a private interface of h11: these tests fail loudly if either installed parser
stops holding them so, or if the plan from them differs from the plan from pairs."""

from __future__ import annotations

import contextlib
import importlib
from types import ModuleType

import pytest

from trioproxy.core._headers import ForwardingRules, RequestPlan, lowered, plan_request_of

PARSERS: list[ModuleType] = []
for _name in ("h11", "h11_mypyc"):
    with contextlib.suppress(ImportError):  # (h11-mypyc is optional)
        PARSERS.append(importlib.import_module(_name))

REQUEST = (
    b"GET /a?b HTTP/1.1\r\nHost: example.test\r\nUser-Agent: t/1\r\nX-Forwarded-For: 192.0.2.1\r\n"
    b"Connection: keep-alive, X-Drop\r\nX-Drop: 1\r\nX-Request-ID: abc-123\r\n\r\n"
)
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: o\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n"
    b'Section-IO-Tag: t\r\nConnection: X-Secret\r\nX-Secret: s\r\nETag: "e"\r\n\r\n'
)


def parsed(h11: ModuleType, role: object, data: bytes) -> object:
    conn = h11.Connection(role)
    if role is h11.CLIENT:  # (a client's machine parses a response only after a request)
        conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
        conn.send(h11.EndOfMessage())
    conn.receive_data(data)
    return conn.next_event()


@pytest.mark.parametrize("h11", PARSERS, ids=lambda module: module.__name__)
def test_a_parsed_head_holds_each_field_as_sent_lower_cased_and_valued(h11: ModuleType) -> None:
    for role, data in ((h11.SERVER, REQUEST), (h11.CLIENT, RESPONSE)):
        headers = parsed(h11, role, data).headers  # type: ignore[attr-defined]
        assert headers._full_items == lowered(headers.raw_items())
        assert [(lname, value) for _, lname, value in headers._full_items] == list(headers)


@pytest.mark.parametrize("h11", PARSERS, ids=lambda module: module.__name__)
def test_the_plan_from_h11s_fields_is_the_plan_from_pairs(h11: ModuleType) -> None:
    request = parsed(h11, h11.SERVER, REQUEST)

    def plan(fields: list[tuple[bytes, bytes, bytes]]) -> RequestPlan:
        return plan_request_of(
            b"GET",
            b"/a?b",
            fields,
            b"1.1",
            peer_ip=b"10.0.0.1",
            rules=ForwardingRules(),
            upstream_authority=b"up:80",
            max_header_count=100,
            make_request_id=lambda: b"id",
        )

    from_h11 = plan(request.headers._full_items)  # type: ignore[attr-defined]
    assert from_h11 == plan(lowered(request.headers.raw_items()))  # type: ignore[attr-defined]
    assert from_h11.headers == [  # (Connection and the X-Drop it names dropped)
        (b"Host", b"example.test"),
        (b"User-Agent", b"t/1"),
        (b"X-Forwarded-For", b"192.0.2.1, 10.0.0.1"),
        (b"X-Request-ID", b"abc-123"),
        (b"Via", b"1.1 trioproxy"),
    ]
