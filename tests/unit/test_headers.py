"""How a request is forwarded (`core/_headers`): `plan_request` (hop-by-hop fields, Host and
absolute-form targets, X-Request-ID, X-Forwarded-For, Via, trusted peers, WebSocket
upgrades, framing), the response's and trailers' headers. Pure: no sockets, no trio.

The trusted-peer plans came from e2e/test_trusted_proxies.py, which keeps the tests through
a running proxy.
"""

from __future__ import annotations

import pytest

from trioproxy.config._settings import Settings
from trioproxy.core._errors import ClientError, MethodNotAllowed, UpstreamError
from trioproxy.core._headers import (
    BodyKind,
    ForwardingRules,
    RequestPlan,
    connection_options,
    header_value,
    plan_request,
    reason_phrase,
    response_headers,
    trailer_headers,
)
from trioproxy.core._requestview import request_view
from trioproxy.core._rulemodel import trusted_networks

from ..support import fields

BOTH_FRAMINGS = [(b"Host", b"a"), (b"Content-Length", b"3"), (b"Transfer-Encoding", b"chunked")]
SPOOF = [(b"True-Client-IP", b"203.0.113.7"), (b"X-Forwarded-For", b"203.0.113.7")]
Headers = list[tuple[bytes, bytes]]


def plan(
    headers: Headers,
    *,
    method: bytes = b"GET",
    target: bytes = b"/",
    version: bytes = b"1.1",
    rules: ForwardingRules | None = None,
    peer: bytes = b"10.0.0.9",
    ids: list[bytes] | None = None,
) -> RequestPlan:
    fresh = iter(ids or [b"fresh-id"])
    return plan_request(
        method,
        target,
        headers,
        version,
        peer_ip=peer,
        rules=rules or ForwardingRules(),
        upstream_authority=b"up:80",
        max_header_count=100,
        make_request_id=lambda: next(fresh),
    )


def values(headers: Headers, lname: bytes) -> list[bytes]:
    return [v for k, v in headers if k.lower() == lname]


def test_a_plain_get_gets_an_id_the_peer_in_x_forwarded_for_and_via() -> None:
    decided = plan([(b"Host", b"site.example"), (b"Accept", b"*/*")])
    assert decided.headers == fields("""
        Host: site.example
        Accept: */*
        X-Request-ID: fresh-id
        X-Forwarded-For: 10.0.0.9
        Via: 1.1 trioproxy
    """)
    assert (decided.target, decided.body, decided.idempotent) == (b"/", BodyKind.NONE, True)
    assert (decided.request_id, decided.host) == (b"fresh-id", b"site.example")
    assert not decided.upgrade


def test_hop_by_hop_fields_and_those_connection_names_are_dropped() -> None:
    headers = fields("""
        Host: x
        Connection: keep-alive, X-Secret, Host, Content-Length
        X-Secret: 1
        Keep-Alive: timeout=5
        TE: trailers
        Proxy-Authorization: Basic x
        Content-Length: 3
    """)
    decided = plan(headers, method=b"POST")
    names = [k.lower() for k, _ in decided.headers]
    # Never hop-by-hop, whatever Connection says:
    assert names[:2] == [b"host", b"content-length"]
    dropped = {b"connection", b"x-secret", b"keep-alive", b"te", b"proxy-authorization"}
    assert not dropped & set(names)
    assert (decided.body, decided.idempotent) == (BodyKind.LENGTH, False)
    assert connection_options(headers) == {b"keep-alive", b"x-secret"}


def test_a_well_formed_request_id_travels_on_at_its_place_and_a_bad_one_is_replaced() -> None:
    kept = plan([(b"X-Request-ID", b"abc-123"), (b"Host", b"x")])
    assert kept.headers[0] == (b"X-Request-ID", b"abc-123") and kept.request_id == b"abc-123"
    for bad in ([(b"X-Request-ID", b"has space")], [(b"X-Request-ID", b"a")] * 2):
        replaced = plan([(b"Host", b"x"), *bad])
        assert values(replaced.headers, b"x-request-id") == [b"fresh-id"]


def test_x_forwarded_for_fields_merge_at_the_first_one_and_the_peer_is_appended() -> None:
    headers = [(b"X-Forwarded-For", b"1.1.1.1"), (b"Host", b"x"), (b"x-forwarded-for", b"2.2.2.2")]
    decided = plan(headers)
    assert decided.headers[0] == (b"X-Forwarded-For", b"1.1.1.1, 2.2.2.2, 10.0.0.9")
    assert len(values(decided.headers, b"x-forwarded-for")) == 1
    without = plan(headers, rules=ForwardingRules(append_x_forwarded_for=False, via=b""))
    assert values(without.headers, b"x-forwarded-for") == [b"1.1.1.1", b"2.2.2.2"]
    assert values(without.headers, b"via") == []


@pytest.mark.parametrize(
    ("target", "host", "expected"),
    [
        (b"http://site.example/a?b", b"site.example", (b"/a?b", b"site.example")),
        (b"https://Site.Example:8443", b"site.example:8443", (b"/", b"Site.Example:8443")),
        (b"http://site.example/x?", b"site.example", (b"/x?", b"site.example")),
        (b"*", b"x", (b"*", b"x")),
    ],
)
def test_absolute_form_becomes_origin_form(
    target: bytes, host: bytes, expected: tuple[bytes, bytes]
) -> None:
    decided = plan([(b"Host", host)], method=b"OPTIONS", target=target)
    assert (decided.target, decided.host) == expected


@pytest.mark.parametrize(
    ("headers", "target", "status"),
    [
        ([(b"Host", b"a"), (b"Host", b"b")], b"/", 400),
        ([(b"Host", b"a")], b"http://b/", 400),  # two hops would read two hosts
        ([(b"Host", b"a")], b"ftp://a/", 400),
        ([(b"Host", b"a")], b"http://[::1/x", 400),
        (
            [(b"Host", b"a"), (b"Content-Length", b"3"), (b"Transfer-Encoding", b"chunked")],
            b"/",
            400,
        ),
        ([], b"/", 400),  # HTTP/1.1 without Host
        ([(b"X-%d" % i, b"v") for i in range(101)], b"/", 431),
    ],
)
def test_requests_another_parser_could_read_differently_are_refused(
    headers: Headers, target: bytes, status: int
) -> None:
    with pytest.raises(ClientError) as caught:
        plan(headers, target=target)
    assert caught.value.status == status


def test_connect_is_refused_with_405() -> None:
    with pytest.raises(MethodNotAllowed):
        plan([(b"Host", b"a:443")], method=b"CONNECT", target=b"a:443")


def test_an_http10_request_without_host_gets_the_upstream_authority() -> None:
    decided = plan([], version=b"1.0")
    assert decided.headers[0] == (b"Host", b"up:80")
    assert values(decided.headers, b"via") == [b"1.0 trioproxy"]


def test_only_a_websocket_get_without_a_body_is_an_upgrade() -> None:
    upgrade = [(b"Host", b"x"), (b"Connection", b"Upgrade"), (b"Upgrade", b"websocket")]
    decided = plan(upgrade)
    assert decided.upgrade
    assert decided.headers[-2:] == [(b"Connection", b"upgrade"), (b"Upgrade", b"websocket")]
    assert not plan(upgrade, method=b"POST").upgrade
    assert not plan([*upgrade, (b"Content-Length", b"4")]).upgrade
    assert not plan([*upgrade[:2], (b"Upgrade", b"h2c")]).upgrade
    assert not plan([*upgrade[1:], (b"Host", b"x")], version=b"1.0").upgrade


def test_a_chunked_body_keeps_its_framing() -> None:
    decided = plan([(b"Host", b"x"), (b"Transfer-Encoding", b"chunked")], method=b"PUT")
    assert decided.body is BodyKind.CHUNKED
    assert decided.headers[-1] == (b"Transfer-Encoding", b"chunked")
    assert decided.idempotent


def test_response_headers_drop_hop_by_hop_and_refuse_two_framings() -> None:
    upstream = fields("""
        Content-Length: 2
        Connection: X-Internal
        X-Internal: secret
        X-Request-ID: upstream's
        X-End: kept
    """)
    out = response_headers(upstream, b"1.1", rules=ForwardingRules(), request_id=b"ours")
    assert out == fields("""
        Content-Length: 2
        X-End: kept
        X-Request-ID: ours
        Via: 1.1 trioproxy
    """)
    with pytest.raises(UpstreamError):
        response_headers(
            [*upstream, (b"Transfer-Encoding", b"chunked")], b"1.1", rules=ForwardingRules()
        )


def test_trailers_lose_framing_routing_and_connection_named_fields() -> None:
    trailers = [
        (b"X-Checksum", b"42"),
        (b"Content-Length", b"9"),
        (b"Host", b"x"),
        (b"X-Hop", b"1"),
    ]
    assert trailer_headers(trailers, [(b"Connection", b"X-Hop")]) == [(b"X-Checksum", b"42")]


def test_header_value_and_reason_phrase() -> None:
    assert header_value([(b"A", b"1"), (b"a", b"2")], b"a") == b"1"
    assert header_value([], b"a") == b""
    assert reason_phrase(404, b"") == b"Not Found"
    assert reason_phrase(404, b"Gone Fishing") == b"Gone Fishing"
    assert reason_phrase(599, b"") == b""


# --- Trusted peers (from e2e/test_trusted_proxies.py) -----------------------------------------


def test_default_trusts_every_peer() -> None:
    assert trusted_networks(Settings().forwarding.trusted_proxies) is None
    assert ForwardingRules().trusts("198.51.100.1")


def test_the_plan_for_an_untrusted_peer() -> None:
    rules = ForwardingRules(trusted_proxies=trusted_networks(["10.0.0.0/8"]))
    headers = [(b"Host", b"x"), *SPOOF, (b"x-forwarded-for", b"1.2.3.4")]
    decided = plan(headers, rules=rules, peer=b"192.0.2.9")
    names = [name.lower() for name, _ in decided.headers]
    assert names.count(b"true-client-ip") == names.count(b"x-forwarded-for") == 1
    assert (b"True-Client-IP", b"192.0.2.9") in decided.headers
    assert (b"X-Forwarded-For", b"192.0.2.9") in decided.headers
    assert not decided.peer_trusted
    assert b"true-client-ip" not in decided.noted
    view = request_view(b"GET", b"/", headers, "192.0.2.9", peer_trusted=decided.peer_trusted)
    assert view.client_ip == "192.0.2.9"
    trusted = request_view(b"GET", b"/", headers, "10.1.1.1", peer_trusted=True)
    assert trusted.client_ip == "203.0.113.7"


def test_ipv4_mapped_peers_match_ipv4_networks() -> None:
    rules = ForwardingRules(trusted_proxies=trusted_networks(["10.0.0.0/8"]))
    assert rules.trusts("::ffff:10.1.2.3")
    assert not rules.trusts("::ffff:11.1.2.3")


def test_without_appending_an_untrusted_x_forwarded_for_is_dropped() -> None:
    rules = ForwardingRules(append_x_forwarded_for=False, trusted_proxies=trusted_networks([]))
    decided = plan([(b"Host", b"x"), *SPOOF], rules=rules, peer=b"192.0.2.9")
    assert values(decided.headers, b"x-forwarded-for") == []
    assert values(decided.headers, b"true-client-ip") == [b"192.0.2.9"]
