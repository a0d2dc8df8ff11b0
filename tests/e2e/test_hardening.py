"""Regressions from an independent review: each test once failed against a running proxy."""

from __future__ import annotations

import trio
import trio.testing

from ..support import Client, exchange_raw, make_settings, raw_origin, read_head, running_proxy


async def test_extra_bytes_from_the_origin_never_reach_another_client() -> None:
    """An origin that sends more than its framing covers poisons its connection: the
    connection is dropped, not pooled, so the next client gets a fresh exchange."""
    connections = 0

    async def oversends(stream: trio.SocketStream) -> None:
        nonlocal connections
        connections += 1
        while head := await read_head(stream):
            if b"/first" in head:
                await stream.send_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                    b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nX-Injected: yes\r\n\r\nPOISON"
                )
            else:
                await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nclean")

    async with raw_origin(oversends) as upstream, running_proxy(upstream) as proxy:
        async with Client.connect(proxy.address) as a:
            assert (await a.request(b"GET", b"/first")).body == b"ok"
        async with Client.connect(proxy.address) as b:
            second = await b.request(b"GET", b"/second")
    assert (second.body, second.header(b"x-injected")) == (b"clean", None)
    assert connections == 2


async def test_body_on_a_head_response_is_not_served_to_the_next_request() -> None:
    async def head_with_body(stream: trio.SocketStream) -> None:
        while head := await read_head(stream):
            body = b"" if head.startswith(b"GET") else b"hello"
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n" + body)
            if not body:
                await stream.send_all(b"world")

    async with raw_origin(head_with_body) as upstream, running_proxy(upstream) as proxy:
        async with Client.connect(proxy.address) as client:
            await client.request(b"HEAD", b"/")
            reply = await client.request(b"GET", b"/")
    assert reply.status == 200 and reply.body == b"world"


async def test_origin_closing_mid_head_is_a_prompt_502() -> None:
    async def cut_head(stream: trio.SocketStream) -> None:
        await read_head(stream)
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Le")

    settings = make_settings(timeouts__upstream_response_s=30)
    async with raw_origin(cut_head) as upstream, running_proxy(upstream, settings) as proxy:
        with trio.fail_after(5):  # once, this spun at 100% CPU until the drain
            async with Client.connect(proxy.address) as client:
                assert (await client.request(b"GET", b"/")).status == 502


async def test_connection_cannot_remove_host_or_content_length(origin: tuple[str, int]) -> None:
    """A Connection field naming Host or Content-Length is refused (400) by the strict
    checks; the header layer alone would keep both. Never is a request forwarded without
    its Host, or with a body its framing no longer covers (that once crashed the task)."""
    async with running_proxy(origin) as proxy, Client.connect(proxy.address) as client:
        hostless = await client.request(b"GET", b"/", [(b"Connection", b"host")])
    async with running_proxy(origin) as proxy, Client.connect(proxy.address) as client:
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
    async with running_proxy(origin) as proxy, Client.connect(proxy.address) as client:
        reply = await client.request(b"GET", b"/", headers, body=b"body")
    names = {name for name, _ in reply.json()["headers"]}
    assert reply.status == 200 and "upgrade" not in names


async def test_tunnels_do_not_use_up_the_pool() -> None:
    """With upstream.max_connections 1, an open tunnel leaves room for ordinary requests."""

    async def upgrades_or_answers(stream: trio.SocketStream) -> None:
        head = await read_head(stream)
        if b"upgrade: websocket" in head.lower():
            await stream.send_all(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\n\r\n"
            )
            await trio.sleep_forever()
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    settings = make_settings(upstream__max_connections=1, timeouts__pool_wait_s=1)
    async with raw_origin(upgrades_or_answers) as upstream:
        async with running_proxy(upstream, settings) as proxy:
            tunnel = await trio.open_tcp_stream(*proxy.address)
            async with tunnel:
                await tunnel.send_all(
                    b"GET /ws HTTP/1.1\r\nHost: x\r\n"
                    b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
                )
                assert (await tunnel.receive_some(65536)).startswith(b"HTTP/1.1 101 ")
                async with Client.connect(proxy.address) as client:
                    assert (await client.request(b"GET", b"/")).status == 200


async def test_early_answer_says_close_and_arrives_intact() -> None:
    """An origin refuses a large upload after its head: the client is told the connection
    closes, and gets the whole answer (a lingering close, not a reset)."""

    async def refuses(stream: trio.SocketStream) -> None:
        await read_head(stream)
        await stream.send_all(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 7\r\n\r\ntoo big")
        await trio.sleep_forever()

    async with raw_origin(refuses) as upstream, running_proxy(upstream) as proxy:
        stream = await trio.open_tcp_stream(*proxy.address)
        async with stream:
            await stream.send_all(
                b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 20000000\r\n\r\n"
            )
            received = b""

            async def keep_sending() -> None:
                try:
                    for _ in range(200):  # bounded: 20 MB at most
                        await stream.send_all(b"x" * 100_000)
                except trio.BrokenResourceError:
                    pass

            async with trio.open_nursery() as nursery:
                nursery.start_soon(keep_sending)
                while not received.endswith(b"too big"):
                    chunk = await stream.receive_some(65536)
                    assert chunk, "closed before the answer arrived"
                    received += chunk
                nursery.cancel_scope.cancel()
    assert received.startswith(b"HTTP/1.1 413 ")
    assert b"Connection: close" in received


async def test_empty_line_before_a_request_is_ignored(origin: tuple[str, int]) -> None:
    """RFC 9112 2.2: clients send a stray CRLF after a POST body."""
    async with running_proxy(origin) as proxy:
        data = await exchange_raw(
            proxy.address,
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok\r\n"
            b"GET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
    assert data.count(b"HTTP/1.1 200 ") == 2


async def test_client_leaving_a_slow_bodyless_request_abandons_it() -> None:
    origin_saw_close = trio.Event()

    async def slow(stream: trio.SocketStream) -> None:
        await read_head(stream)
        with trio.move_on_after(10):
            if not await stream.receive_some(1):  # the proxy hung up on us
                origin_saw_close.set()

    async with raw_origin(slow) as upstream, running_proxy(upstream) as proxy:
        stream = await trio.open_tcp_stream(*proxy.address)
        await stream.send_all(b"GET /long-poll HTTP/1.1\r\nHost: x\r\n\r\n")
        await trio.testing.wait_all_tasks_blocked()
        await stream.aclose()
        with trio.fail_after(5):
            await origin_saw_close.wait()
        while proxy.server.ctx.stats.connections_open:
            await trio.testing.wait_all_tasks_blocked()
    assert proxy.records[-1].status == 499
    assert proxy.server.pool.open_count == 0
