"""An ASGI app as the origin on a memory connection: HTTP/1.1 by h11, one request at a time.

Small on purpose (hypercorn serves real sockets in `proxy_in_front_of`): the ``http`` scope,
a request body streamed to ``receive`` as it arrives, the response streamed as the app sends
it, keep-alive, 500 for an app that fails before its response starts (and a reset after). A
peer that goes away mid-exchange ends the connection, as a reset would: the app's next
``send`` raises, its next ``receive`` is ``http.disconnect``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import unquote

import h11
import trio

__all__ = ["ASGIApp", "echo_app", "serve_asgi"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_READ_BYTES = 65536


class _Gone(Exception):
    """The proxy's end of the connection went away."""


class _Connection:
    __slots__ = ("conn", "stream")

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.SERVER)

    async def next_event(self) -> Any:
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            try:
                data = await self.stream.receive_some(_READ_BYTES)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise _Gone from exc
            self.conn.receive_data(bytes(data))

    async def send(self, event: Any) -> None:
        data = self.conn.send(event)
        if data:
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self.conn.send_failed()
                raise _Gone from exc


async def serve_asgi(
    app: ASGIApp, stream: trio.abc.Stream, *, client: tuple[str, int], server: tuple[str, int]
) -> None:
    """Serve ``app`` on ``stream`` until either side closes it."""
    connection = _Connection(stream)
    try:
        while True:
            event = await connection.next_event()
            if not isinstance(event, h11.Request):
                return  # closed between requests (or a protocol error: nothing to answer)
            await _exchange(app, connection, event, client, server)
            if connection.conn.our_state is not h11.DONE:
                return
            while connection.conn.their_state is h11.SEND_BODY:  # the app left body unread
                if isinstance(await connection.next_event(), h11.EndOfMessage):
                    break
            if connection.conn.their_state is not h11.DONE:
                return
            connection.conn.start_next_cycle()
    except (_Gone, h11.ProtocolError):
        return


def _scope(request: h11.Request, client: tuple[str, int], server: tuple[str, int]) -> Scope:
    path, _, query = request.target.partition(b"?")
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": request.http_version.decode(),
        "method": request.method.decode(),
        "scheme": "http",
        "path": unquote(path.decode("latin-1")),
        "raw_path": path,
        "query_string": query,
        "root_path": "",
        "headers": [(name, value) for name, value in request.headers],
        "client": client,
        "server": server,
    }


async def _exchange(
    app: ASGIApp,
    connection: _Connection,
    request: h11.Request,
    client: tuple[str, int],
    server: tuple[str, int],
) -> None:
    responded = trio.Event()
    started = False

    async def receive() -> Message:
        if connection.conn.their_state is h11.SEND_BODY:
            try:
                event = await connection.next_event()
            except (_Gone, h11.ProtocolError):
                return {"type": "http.disconnect"}
            if isinstance(event, h11.Data):
                return {"type": "http.request", "body": bytes(event.data), "more_body": True}
            return {"type": "http.request", "body": b"", "more_body": False}
        await responded.wait()  # nothing more will come: disconnect once the answer is sent
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal started
        kind = message["type"]
        if kind == "http.response.start":
            started = True
            headers = [(bytes(n), bytes(v)) for n, v in message.get("headers", [])]
            await connection.send(h11.Response(status_code=message["status"], headers=headers))
        elif kind == "http.response.body":
            if message.get("body"):
                await connection.send(h11.Data(data=bytes(message["body"])))
            if not message.get("more_body", False):
                await connection.send(h11.EndOfMessage())
                responded.set()

    try:
        await app(_scope(request, client, server), receive, send)
    except _Gone:
        raise
    except Exception:
        if started:
            raise _Gone from None  # half a response: all a peer can be told is a reset
        await connection.send(h11.Response(status_code=500, headers=[(b"content-length", b"0")]))
        await connection.send(h11.EndOfMessage())
    finally:
        responded.set()


async def echo_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The default origin: answers every request with JSON describing what arrived (method,
    path, query, headers as [name, value] pairs, body_length)."""
    body = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return
        body += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    answer = json.dumps(
        {
            "method": scope["method"],
            "path": scope["path"],
            "query": scope["query_string"].decode("latin-1"),
            "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]],
            "body_length": body,
        }
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(answer))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})
