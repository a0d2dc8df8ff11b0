"""trioproxy as a library: serve/running in the caller's nursery, testing helpers, plugin."""

from __future__ import annotations

import trio
import trio.testing

import trioproxy
from trioproxy.app._origin import Receive, Scope, Send, handle_lifespan
from trioproxy.testing import RunningProxy, proxy_in_front_of

from ..support import Client, raw_origin, read_head


async def test_serve_in_the_callers_nursery(origin: tuple[str, int]) -> None:
    async with trio.open_nursery() as nursery:
        proxy: trioproxy.RunningProxy = await nursery.start(trioproxy.serve, origin)
        assert proxy.url == f"http://127.0.0.1:{proxy.port}"
        async with Client.connect(proxy.address) as client:
            assert (await client.request(b"GET", b"/")).status == 200
        nursery.cancel_scope.cancel()


async def test_cancellation_mid_request_leaves_no_task_or_socket_behind() -> None:
    origin_saw_close = trio.Event()
    request_arrived = trio.Event()

    async def stalls(stream: trio.SocketStream) -> None:
        await read_head(stream)
        request_arrived.set()
        if not await stream.receive_some(1):  # the proxy hangs up when cancelled
            origin_saw_close.set()

    async with raw_origin(stalls) as upstream:
        outer = trio.lowlevel.current_task()
        before = len(outer.child_nurseries)
        async with trio.open_nursery() as nursery:
            proxy = await nursery.start(trioproxy.serve, upstream)

            async def client() -> None:
                async with Client.connect(proxy.address) as c:
                    await c.request(b"GET", b"/stalls")

            nursery.start_soon(client)
            await request_arrived.wait()
            nursery.cancel_scope.cancel()
        assert len(outer.child_nurseries) == before
        with trio.fail_after(5):
            await origin_saw_close.wait()


async def test_running_context_captures_parsed_access_lines(origin: tuple[str, int]) -> None:
    async with trioproxy.running(origin, capture_access_log=True) as proxy:
        async with Client.connect(proxy.address) as client:
            await client.request(b"GET", b"/logged?x=1", [(b"User-Agent", b"tests/1.0")])
    (line,) = proxy.access_log
    assert line["request"] == "GET /logged?x=1 HTTP/1.1"
    assert line["status"] == "200"
    assert line["useragent"] == "tests/1.0"


async def _hello_app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await handle_lifespan(receive, send)
        return
    await send({"type": "http.response.start", "status": 201, "headers": [(b"x-app", b"mine")]})
    await send({"type": "http.response.body", "body": b"hello from my app"})


async def test_proxy_in_front_of_an_asgi_app() -> None:
    async with proxy_in_front_of(_hello_app) as proxy, Client.connect(proxy.address) as client:
        reply = await client.request(b"GET", b"/")
    assert (reply.status, reply.body, reply.header(b"x-app")) == (
        201,
        b"hello from my app",
        b"mine",
    )
    assert proxy.access_log[0]["status"] == "201"


async def test_pytest_plugin_fixture(proxied_app: RunningProxy) -> None:
    async with Client.connect(proxied_app.address) as client:
        reply = await client.request(b"POST", b"/echo", body=b"12345")
    assert reply.json()["body_length"] == 5
    assert proxied_app.access_log[0]["method"] == "POST"
