"""Real origins for the demo and for tests: ASGI apps served by hypercorn's trio worker."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def handle_lifespan(receive: Receive, send: Send) -> None:
    """Answer the lifespan protocol; hypercorn 0.18 on trio crashes a worker whose app
    simply returns on the lifespan scope."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def echo_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers every request with a JSON description of what arrived.

    Keys: method, path, query, headers (a list of [name, value] pairs in arrival order),
    body_length, client_port (one per upstream connection, so tests can count connections).
    """
    if scope["type"] == "lifespan":
        await handle_lifespan(receive, send)
        return
    body_length = 0
    while True:
        message = await receive()
        body_length += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    payload = {
        "method": scope["method"],
        "path": scope["path"],
        "query": scope["query_string"].decode("latin-1"),
        "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
        "body_length": body_length,
        "client_port": scope["client"][1] if scope.get("client") else None,
    }
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(body)),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def origin_config(host: str = "127.0.0.1", port: int = 0) -> Config:
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = None
    return config


@asynccontextmanager
async def origin(app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve ``app`` with hypercorn on loopback for the block; yields its base URL."""
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(serve, app, origin_config(host, port))
        try:
            yield binds[0]
        finally:
            nursery.cancel_scope.cancel()
