"""Both admin servers, the proxy's (trio) and the ``--workers N`` supervisor's (threads), give
the same bytes to the same request: one reader, one routing, one set of answers.

Real sockets on 127.0.0.1 port 0; the supervisor's server runs in a worker thread, one
accepted connection per call, as its loop would serve it.
"""

from __future__ import annotations

import select
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import trio

from trioproxy.app._superadmin import SupervisorAdmin
from trioproxy.engine._admin import AdminServer, open_admin_listener
from trioproxy.engine._metrics import RequestMetrics

from ..support import exchange_raw

UPSTREAM = ("127.0.0.1", 9)  # nothing listens on discard: /readyz says why, alike


@asynccontextmanager
async def proxy_admin() -> AsyncIterator[Callable[[bytes], Awaitable[bytes]]]:
    listener = open_admin_listener("127.0.0.1:0")
    server = AdminServer(
        is_draining=lambda: False,
        upstream=UPSTREAM,
        metrics_snapshot=RequestMetrics().snapshot,
    )
    address = listener.socket.getsockname()[:2]
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve, listener)
        try:
            yield lambda data: exchange_raw(address, data)
        finally:
            nursery.cancel_scope.cancel()
            listener.socket.close()


@asynccontextmanager
async def supervisor_admin() -> AsyncIterator[Callable[[bytes], Awaitable[bytes]]]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    admin = SupervisorAdmin(listener, healthy=lambda: True, upstream=UPSTREAM, metrics=bytes)

    def serve_one() -> None:
        readable, _, _ = select.select([listener], [], [], 5)
        assert readable, "no connection arrived"
        admin.serve_one()

    async def exchange(data: bytes) -> bytes:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, serve_one)
            return await exchange_raw(listener.getsockname(), data)

    try:
        yield exchange
    finally:
        listener.close()


REQUESTS = [
    b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /healthz?verbose=1 HTTP/1.0\r\n\r\n",
    b"\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",  # RFC 9112 2.2: empty line skipped
    b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi",
    b"GET /healthz HTTP/1.1\r\n\r\n",  # no Host: 400
    b"GET /healthz HTTP/1.1\nHost: x\n\n",  # bare LF: 400
    b"\x00\x01 nonsense\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 10_000 + b"\r\n\r\n",  # 431
    b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",  # 414
]


@pytest.mark.parametrize("request_bytes", REQUESTS, ids=lambda r: repr(r[:24]))
async def test_both_admin_servers_answer_alike(request_bytes: bytes) -> None:
    with trio.fail_after(20):
        async with proxy_admin() as ask_proxy:
            from_proxy = await ask_proxy(request_bytes)
        async with supervisor_admin() as ask_supervisor:
            from_supervisor = await ask_supervisor(request_bytes)
    assert from_proxy.startswith(b"HTTP/1.1 ")
    assert from_proxy == from_supervisor
