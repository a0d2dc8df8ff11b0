"""Forwarding semantics through the real server, with hypercorn as the origin. (The last four
came from the former test_hardening.py: regressions from an independent review.)"""

from __future__ import annotations

import trio

from ..support import exchange_raw, fields, parse_responses, running_proxy


async def test_get_is_forwarded_with_headers_in_order(origin: tuple[str, int]) -> None:
    async with running_proxy(origin) as proxy, proxy.client() as client:
        reply = await client.request(
            b"GET",
            b"/some/path?q=1&r=%20x",
            fields("""
                Host: site.example
                X-Multi: one
                Accept: */*
                X-Multi: two
                X-Forwarded-Proto: https
                True-Client-IP: 203.0.113.9
                X-Forwarded-For: 203.0.113.9, 198.51.100.1
            """),
        )
    assert reply.status == 200
    seen = reply.json()
    assert seen["method"] == "GET"
    assert seen["path"] == "/some/path"
    assert seen["query"] == "q=1&r=%20x"
    assert seen["headers"] == [
        ["host", "site.example"],
        ["x-multi", "one"],
        ["accept", "*/*"],
        ["x-multi", "two"],
        ["x-forwarded-proto", "https"],
        ["true-client-ip", "203.0.113.9"],
        ["x-forwarded-for", "203.0.113.9, 198.51.100.1, 127.0.0.1"],
        ["x-request-id", (reply.header(b"x-request-id") or b"").decode()],
        ["via", "1.1 trioproxy"],
    ]
    assert reply.header(b"via") == b"1.1 trioproxy"


async def test_x_forwarded_for_is_added_when_absent(origin: tuple[str, int]) -> None:
    async with running_proxy(origin) as proxy, proxy.client() as client:
        seen = (await client.request(b"GET", b"/")).json()
    assert ["x-forwarded-for", "127.0.0.1"] in seen["headers"]


async def test_hop_by_hop_request_headers_never_reach_the_origin(origin: tuple[str, int]) -> None:
    hop_by_hop = fields("""
        Connection: keep-alive, X-Secret-Hop
        X-Secret-Hop: 1
        Keep-Alive: timeout=5
        Proxy-Connection: keep-alive
        TE: trailers
        Trailer: X-T
        Upgrade: h2c
        Proxy-Authorization: Basic Zm9vOmJhcg==
    """)
    async with running_proxy(origin) as proxy, proxy.client() as client:
        seen = (await client.request(b"GET", b"/", [*hop_by_hop, (b"X-End", b"kept")])).json()
    names = {name for name, _ in seen["headers"]}
    assert names.isdisjoint({n.decode().lower() for n, _ in hop_by_hop})
    assert ["x-end", "kept"] in seen["headers"]


async def test_keep_alive_reuses_one_upstream_connection(origin: tuple[str, int]) -> None:
    async with running_proxy(origin) as proxy, proxy.client() as client:
        ports = {
            (await client.request(b"GET", b"/%d" % i)).json()["client_port"] for i in range(20)
        }
    assert len(ports) == 1
    assert proxy.server.pool.stats.opened == 1
    assert proxy.server.pool.stats.reused == 19


async def test_pipelined_requests_are_answered_in_order(origin: tuple[str, int]) -> None:
    pipelined = b"".join(
        b"GET /%d HTTP/1.1\r\nHost: x\r\n%s\r\n" % (i, b"Connection: close\r\n" if i == 4 else b"")
        for i in range(5)
    )
    async with running_proxy(origin) as proxy:
        data = await exchange_raw(proxy.address, pipelined)
    replies = parse_responses(data)
    assert [r.json()["path"] for r in replies] == ["/0", "/1", "/2", "/3", "/4"]


async def test_http10_client_gets_http10_semantics(origin: tuple[str, int]) -> None:
    async with running_proxy(origin) as proxy:
        data = await exchange_raw(proxy.address, b"GET /old HTTP/1.0\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200 ")  # h11 speaks 1.1 but frames for a 1.0 peer
    (reply,) = parse_responses(data)
    assert reply.json()["path"] == "/old"
    # No Host from the client: the upstream authority stands in, as nginx's $proxy_host.
    assert reply.json()["headers"][0][0] == "host"
    assert [name for name, _ in reply.json()["headers"]].count("via") == 1
    assert ["via", "1.0 trioproxy"] in reply.json()["headers"]


async def test_content_length_and_chunked_bodies_arrive_whole(origin: tuple[str, int]) -> None:
    body = bytes(range(256)) * 1000
    async with running_proxy(origin) as proxy, proxy.client() as client:
        fixed = (await client.request(b"POST", b"/cl", body=body)).json()
        chunked = (await client.request(b"PUT", b"/te", body=[body[:1000], body[1000:]])).json()
    assert fixed["body_length"] == len(body)
    assert chunked["body_length"] == len(body)
    assert ["transfer-encoding", "chunked"] in chunked["headers"]


async def test_head_response_has_no_body(origin: tuple[str, int]) -> None:
    async with running_proxy(origin) as proxy, proxy.client() as client:
        head = await client.request(b"HEAD", b"/")
        get = await client.request(b"GET", b"/")
    assert head.status == 200 and head.body == b""
    assert get.status == 200 and get.body


async def test_many_concurrent_clients(origin: tuple[str, int]) -> None:
    results: list[int] = []

    async with running_proxy(origin) as proxy:

        async def one_client() -> None:
            async with proxy.client() as client:
                for _ in range(5):
                    results.append((await client.request(b"GET", b"/")).status)

        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(one_client)
    assert results == [200] * 100
    assert len(proxy.records) == 100


async def test_request_ids_are_kept_generated_returned_and_logged(origin: tuple[str, int]) -> None:
    async with running_proxy(origin) as proxy, proxy.client() as client:
        kept = await client.request(b"GET", b"/", [(b"X-Request-ID", b"abc-123_DEF.4")])
        fresh = await client.request(b"GET", b"/")
        replaced = await client.request(b"GET", b"/", [(b"X-Request-ID", b"bad id; <script>")])
    assert kept.header(b"x-request-id") == b"abc-123_DEF.4"
    assert ["x-request-id", "abc-123_DEF.4"] in kept.json()["headers"]
    for reply in (fresh, replaced):
        request_id = reply.header(b"x-request-id")
        assert request_id is not None and len(request_id) == 32
        assert int(request_id, 16) >= 0
        assert ["x-request-id", request_id.decode()] in reply.json()["headers"]
    assert fresh.header(b"x-request-id") != replaced.header(b"x-request-id")
    assert [r.request_id for r in proxy.records] == [
        b"abc-123_DEF.4",
        fresh.header(b"x-request-id"),
        replaced.header(b"x-request-id"),
    ]


async def test_connection_cannot_remove_host_or_content_length(origin: tuple[str, int]) -> None:
    """A Connection field naming Host or Content-Length is refused (400) by the strict
    checks; the header layer alone would keep both. Never is a request forwarded without
    its Host, or with a body its framing no longer covers (that once crashed the task)."""
    async with running_proxy(origin) as proxy, proxy.client() as client:
        hostless = await client.request(b"GET", b"/", [(b"Connection", b"host")])
    async with running_proxy(origin) as proxy, proxy.client() as client:
        unframed = await client.request(
            b"POST", b"/", [(b"Connection", b"content-length")], body=b"12345"
        )
    assert hostless.status == 400 or ["host", "test.example"] in hostless.json()["headers"]
    assert unframed.status == 400 or unframed.json()["body_length"] == 5
    assert not [r for r in proxy.records if r.status >= 500]


async def test_malformed_absolute_form_target_is_400(origin: tuple[str, int]) -> None:
    async with running_proxy(origin) as proxy:
        for target in (b"http://[::1/x", b"http://[zz]/x", b"http://host:port/x"):
            data = await exchange_raw(
                proxy.address, b"GET %s HTTP/1.1\r\nHost: host\r\n\r\n" % target
            )
            assert data.startswith(b"HTTP/1.1 400 "), target


async def test_upgrade_with_a_body_is_forwarded_as_plain_http(origin: tuple[str, int]) -> None:
    headers = [(b"Connection", b"Upgrade"), (b"Upgrade", b"websocket")]
    async with running_proxy(origin) as proxy, proxy.client() as client:
        reply = await client.request(b"GET", b"/", headers, body=b"body")
    names = {name for name, _ in reply.json()["headers"]}
    assert reply.status == 200 and "upgrade" not in names


async def test_empty_line_before_a_request_is_ignored(origin: tuple[str, int]) -> None:
    """RFC 9112 2.2: clients send a stray CRLF after a POST body."""
    async with running_proxy(origin) as proxy:
        data = await exchange_raw(
            proxy.address,
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok\r\n"
            b"GET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
    assert data.count(b"HTTP/1.1 200 ") == 2
