"""The access log tells what the proxy sent: its own answers' bytes and type, body bytes as
written (never more than ``bytes``), an X-Request-ID on every answer, Section's log tag."""

from __future__ import annotations

import trio

import trioproxy
from trioproxy.config._config import settings_from_bytes
from trioproxy.core._accesslog import AccessRecord

from ..support import (
    Client,
    answering,
    exchange_raw,
    make_settings,
    raw_origin,
    read_head,
    running_proxy,
    unused_address,
)

TEXT_PLAIN = "text/plain; charset=utf-8"


async def test_a_502_logs_the_body_and_type_it_sent_and_carries_a_request_id() -> None:
    async with trioproxy.running(await unused_address(), capture_access_log=True) as proxy:
        async with Client.connect(proxy.address) as client:
            reply = await client.request(b"GET", b"/down")
    (line,) = proxy.access_log
    assert reply.status == 502
    assert line["response_body_bytes"] == str(len(reply.body)) == "16"
    assert line["content_type"].encode() == TEXT_PLAIN.encode() == reply.header(b"content-type")
    assert reply.header(b"x-request-id") == line["request_id"].encode()
    assert len(line["request_id"]) == 32


async def test_a_400_logs_what_it_sent_and_carries_a_generated_request_id(
    origin: tuple[str, int],
) -> None:
    async with trioproxy.running(origin, capture_access_log=True) as proxy:
        data = await exchange_raw(proxy.address, b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    (line,) = proxy.access_log
    assert line["bytes"] == str(len(data))
    assert line["response_body_bytes"] == str(len(body)) == "16"
    assert line["content_type"] == TEXT_PLAIN
    assert f"x-request-id: {line['request_id']}".encode() in head.lower()
    assert len(line["request_id"]) == 32


async def test_a_rule_answer_logs_its_body_and_type(origin: tuple[str, int]) -> None:
    settings = settings_from_bytes(
        b'[[rules]]\nmatch.path = "/robots.txt"\nrespond.body = "User-agent: *\\n"\n'
        b'respond.headers = { Content-Type = "text/x-robots" }\n'
        b'[[rules]]\nmatch.path = "/no"\ndeny = { status = 403 }\n',
        file="t.toml",
    )
    async with running_proxy(origin, settings) as proxy, Client.connect(proxy.address) as c:
        robots = await c.request(b"GET", b"/robots.txt")
        denied = await c.request(b"GET", b"/no")
    assert [r.status for r in (robots, denied)] == [200, 403]
    first, second = proxy.records
    assert (first.body_bytes_sent, first.content_type) == (14, b"text/x-robots")
    assert (second.body_bytes_sent, second.content_type) == (len(denied.body), TEXT_PLAIN.encode())
    assert denied.header(b"x-request-id") == second.request_id


async def test_section_io_tag_from_the_upstream_response_is_logged() -> None:
    tagging = answering(
        b"HTTP/1.1 200 OK\r\nsection-io-tag: checkout\r\nContent-Length: 2\r\n\r\nok"
    )
    async with raw_origin(tagging) as address:
        async with trioproxy.running(address, capture_access_log=True) as proxy:
            async with Client.connect(proxy.address) as client:
                assert (await client.request(b"GET", b"/")).body == b"ok"
    assert proxy.access_log[0]["section_io_tag"] == "checkout"


async def test_a_response_cut_short_by_client_send_s_logs_only_bytes_written() -> None:
    body_size = 64 << 20  # far more than the socket buffers hold between us and the client

    async def endless(stream: trio.SocketStream) -> None:
        await read_head(stream)
        head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % body_size
        try:
            await stream.send_all(head)
            for _ in range(body_size >> 16):
                await stream.send_all(bytes(65536))
        except trio.BrokenResourceError:
            pass  # the proxy gave up on the client and dropped us

    records: list[AccessRecord] = []
    logged = trio.Event()

    def sink(record: AccessRecord) -> None:
        records.append(record)
        logged.set()

    settings = make_settings(timeouts__client_send_s=0.3)
    async with raw_origin(endless) as address:
        async with trioproxy.running(address, settings, access_log=sink) as proxy:
            stream = await trio.open_tcp_stream(*proxy.address)
            async with stream:
                await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                with trio.fail_after(20):
                    await logged.wait()  # we read nothing: the proxy gives up after 0.3 s
                    received = 0
                    try:
                        while chunk := await stream.receive_some(1 << 20):
                            received += len(chunk)
                    except trio.BrokenResourceError:
                        pass  # a reset: the proxy closed with bytes of ours unread
    (record,) = records
    assert record.status == 200
    assert 0 < record.body_bytes_sent < record.bytes_sent < body_size
    assert received <= record.bytes_sent
