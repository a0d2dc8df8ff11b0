"""Access-log lines as the proxy writes them, for a proxied request, a 502, a 400, a tunnel."""

from __future__ import annotations

import trioproxy

from ..support import Client, exchange_raw, fields, unused_address


async def test_every_field_of_a_proxied_request(origin: tuple[str, int]) -> None:
    headers = fields("""
        Host: shop.example
        Referer: https://shop.example/cart
        User-Agent: tests/2.0
        X-Forwarded-Proto: https
        X-Forwarded-For: 203.0.113.7, 10.0.0.1
        True-Client-IP: 203.0.113.7
        section-io-id: abc123
        X-Request-ID: req-1
    """)
    async with trioproxy.running(origin, capture_access_log=True) as proxy:
        async with Client.connect(proxy.address) as client:
            reply = await client.request(b"POST", b"/items?id=7", headers, body=b"x" * 100)
    (line,) = proxy.access_log
    assert set(line) == set(trioproxy.Settings().access_log.fields)
    assert all(isinstance(value, str) for value in line.values())
    expected_subset = {
        "request": "POST /items?id=7 HTTP/1.1",
        "method": "POST",
        "path": "/items",
        "status": "200",
        "bytes": str(len(reply.body) + _head_length(reply)),
        "response_body_bytes": str(len(reply.body)),
        "content_type": "application/json",
        "hostname": "shop.example",
        "referrer": "https://shop.example/cart",
        "useragent": "tests/2.0",
        "http_x_forwarded_proto": "https",
        "remote_addr": "203.0.113.7",
        "x_forwarded_for": "203.0.113.7, 10.0.0.1",
        "upstream_status": "200",
        "upstream_addr": f"{origin[0]}:{origin[1]}",
        "section_io_id": "abc123",
        "request_id": "req-1",
    }
    assert {k: line[k] for k in expected_subset} == expected_subset
    assert int(line["request_length"]) > 100  # head and body
    assert int(line["time_taken_ms"]) >= int(line["upstream_time_ms"]) >= 0
    assert line["time"][:4].isdigit() and line["time"][-6] in "+-"


def _head_length(reply: object) -> int:
    from ..support import Reply

    assert isinstance(reply, Reply)
    head = b"HTTP/1.1 200 OK\r\n" + b"".join(b"%s: %s\r\n" % kv for kv in reply.headers) + b"\r\n"
    return len(head)


async def test_a_502_is_logged_with_what_is_known() -> None:
    async with trioproxy.running(await unused_address(), capture_access_log=True) as proxy:
        async with Client.connect(proxy.address) as client:
            await client.request(b"GET", b"/down", [(b"Host", b"site.example")])
    (line,) = proxy.access_log
    assert line["status"] == "502"
    assert line["upstream_status"] == "-"
    assert line["upstream_addr"] == "-"  # no connection was ever made
    assert line["hostname"] == "site.example"
    assert line["request"] == "GET /down HTTP/1.1"
    assert int(line["bytes"]) > 0


async def test_a_400_is_logged_with_what_is_known(origin: tuple[str, int]) -> None:
    async with trioproxy.running(origin, capture_access_log=True) as proxy:
        data = await exchange_raw(proxy.address, b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 400 ")
    (line,) = proxy.access_log
    assert line["status"] == "400"
    assert line["request"] == "-"  # the request line was never parsed into a request
    assert line["upstream_status"] == "-"
    assert line["remote_addr"] == "127.0.0.1"
    assert int(line["bytes"]) == len(data)
