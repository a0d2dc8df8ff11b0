"""The admin listener: health, readiness and Prometheus metrics on a loopback-only port.

Off by default; ``[admin] listen = "127.0.0.1:9000"`` turns it on. It answers three paths, each
to GET (and HEAD), one request per connection (probes and scrapers open a connection each time,
so keep-alive would buy nothing and cost a state machine):

- ``/healthz``: 200 while the proxy accepts connections, 503 once it drains (so the platform
  stops routing to it while in-flight requests finish);
- ``/readyz``: 200 when the upstream name resolves and a fresh TCP connection to it opens
  within `READY_TIMEOUT_S` (never one from the pool: an idle pooled connection proves nothing
  about the next connect), else 503 with the reason as a one-line text body; 503 while draining;
- ``/metrics``: the Prometheus text format (0.0.4) of the proxy's collector (`_metrics`).

Other paths get 404, other methods 405. The server is a few dozen lines of h11 rather than an
ASGI server: every read and write has a deadline, a request head is at most
`MAX_REQUEST_HEAD_BYTES`, and at most `MAX_CONNECTIONS` connections are served at once.

The platform routes only port 80 into the container, and the admin endpoints tell anyone who
can reach them about the upstream and the traffic: they must stay on loopback. The config
loader already rejects other addresses; `open_admin_listener` checks again, on what the address
resolves to and on what was actually bound, so Settings built in code cannot get around it.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import socket
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING

import trio

from ..core._addr import format_host_port
from ..core._errors import ProxyError
from ._adminbind import MAX_CONNECTIONS, AdminListenError, bind_admin_socket
from ._exposition import exposition
from ._h11 import h11
from ._listen import accept_forever, as_listener
from ._peer import Downstream
from ._transport import Transport, connect_socket

if TYPE_CHECKING:
    from ._metrics import MetricsSnapshot

__all__ = [
    "MAX_CONNECTIONS",
    "MAX_REQUEST_HEAD_BYTES",
    "READY_TIMEOUT_S",
    "AdminListenError",
    "AdminServer",
    "check_upstream",
    "open_admin_listener",
]

log = logging.getLogger("trioproxy")

# Kubernetes' probes give up after 1 s by default (timeoutSeconds); a readiness check that
# cannot connect within 2 s reports not ready either way, with a reason a person can read.
READY_TIMEOUT_S = 2.0
# Reading a request head and writing an answer: probes and scrapers are local and quick.
IO_TIMEOUT_S = 5.0
# After answering: how long, and how much, to read what a client still sends (`_linger`).
LINGER_S = 1.0
LINGER_MAX_BYTES = 65536
# Probes and scrapers send a request line and a few headers; anything larger is not one of them.
MAX_REQUEST_HEAD_BYTES = 8192

# generate_latest writes the 0.0.4 text format whatever prometheus-client's "latest" is.
_METRICS_CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
_TEXT = b"text/plain; charset=utf-8"

_Answer = tuple[int, bytes, bytes]  # status, content type, body


def open_admin_listener(address: str) -> trio.SocketListener:
    """Bind ``HOST:PORT`` for the admin listener, refusing anything but loopback.

    Synchronous, like `open_listener`: it works before ``trio.run`` (the command binds its
    addresses first, so that a bad one is one line on stderr) and inside it.
    """
    return trio.SocketListener(trio.socket.from_stdlib_socket(bind_admin_socket(address)))


async def check_upstream(host: str, port: int, *, timeout_s: float = READY_TIMEOUT_S) -> str | None:
    """None if ``host`` resolves and a new TCP connection to it opens within ``timeout_s``;
    otherwise why not, in one line. The connection is closed at once, unused."""
    upstream = format_host_port(host, port)
    phase = "resolving"
    with trio.move_on_after(timeout_s):
        try:
            infos = await trio.socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
            )
        except OSError as exc:
            return f"upstream {upstream} does not resolve: {exc}"
        phase = "connecting to"
        errors: list[str] = []
        for family, _, _, _, sockaddr in infos:
            try:
                transport = await connect_socket(family, sockaddr)
            except OSError as exc:
                reason = os.strerror(exc.errno) if exc.errno else str(exc)
                errors.append(f"{format_host_port(*sockaddr[:2])}: {reason}")
                continue
            transport.close()
            return None
        if len(errors) == 1:  # the address once, as the proxy's own stderr line says it
            return f"cannot connect to upstream {errors[0]}"
        return f"cannot connect to upstream {upstream}: {'; '.join(errors) or 'no address'}"
    return f"upstream {upstream}: timed out {phase} it after {timeout_s:g}s"


class AdminServer:
    """Serves the admin endpoints on one listener until cancelled."""

    def __init__(
        self,
        *,
        is_draining: Callable[[], bool],
        upstream: tuple[str, int],
        metrics_snapshot: Callable[[], MetricsSnapshot | Awaitable[MetricsSnapshot]],
        ready_timeout_s: float = READY_TIMEOUT_S,
        io_timeout_s: float = IO_TIMEOUT_S,
    ) -> None:
        self._is_draining = is_draining
        self._upstream = upstream
        # Copies every number, on the event loop; the copy is formatted in a worker thread.
        self._metrics_snapshot = metrics_snapshot
        self._ready_timeout_s = ready_timeout_s
        self._io_timeout_s = io_timeout_s
        self._slots = trio.Semaphore(MAX_CONNECTIONS)
        self._routes: dict[bytes, Callable[[], Awaitable[_Answer]]] = {
            b"/healthz": self._healthz,
            b"/readyz": self._readyz,
            b"/metrics": self._metrics,
        }

    async def serve(
        self,
        listener: trio.SocketListener,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        async with trio.open_nursery() as handlers:
            task_status.started()
            await accept_forever(
                as_listener(listener), self._slots, handlers, self._handle, name="admin"
            )

    async def _handle(self, transport: Transport) -> None:
        # Nothing may escape: an exception leaving a handler would take the nursery, and with
        # it the proxy, down.
        try:
            await self._serve_one(transport)
        except ProxyError:
            pass  # the client went away, or was too slow
        except Exception as exc:
            log.error("admin: internal error: %r", exc)
        finally:
            self._slots.release()
            transport.close()

    async def _serve_one(self, transport: Transport) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_HEAD_BYTES)
        client = Downstream(transport, conn)
        request: h11.Request | None = None
        try:
            with trio.move_on_after(self._io_timeout_s):
                request = await _receive_request(client)
        except h11.RemoteProtocolError as exc:  # malformed or oversized (400, 431)
            if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
                return
            answer = _text(exc.error_status_hint, f"bad request: {exc}")
        else:
            if request is None:  # closed early, or silent past the deadline: nobody to answer
                return
            answer = await self._answer(request)  # /readyz bounds its own wait
        _queue(client, answer, head_only=request is not None and request.method == b"HEAD")
        await client.flush(self._io_timeout_s)
        await client.linger(LINGER_S, LINGER_MAX_BYTES)

    async def _answer(self, request: h11.Request) -> _Answer:
        path = request.target.partition(b"?")[0]
        route = self._routes.get(path)
        if route is None:
            return _text(404, "not found; try /healthz, /readyz or /metrics")
        if request.method not in (b"GET", b"HEAD"):
            return _text(405, "method not allowed; use GET")
        return await route()

    async def _healthz(self) -> _Answer:
        return _text(503, "draining") if self._is_draining() else _text(200, "ok")

    async def _readyz(self) -> _Answer:
        if self._is_draining():
            return _text(503, "draining")
        problem = await check_upstream(*self._upstream, timeout_s=self._ready_timeout_s)
        return _text(200, "ready") if problem is None else _text(503, problem)

    async def _metrics(self) -> _Answer:
        # The copy is taken here, on the event loop where the counters change, so it is
        # consistent; formatting it (milliseconds for thousands of series) runs in a thread
        # so that the proxy's requests do not wait for a scrape.
        snapshot = self._metrics_snapshot()
        if inspect.isawaitable(snapshot):  # the supervisor's: it asks its workers
            snapshot = await snapshot
        body = await trio.to_thread.run_sync(partial(exposition, snapshot))
        return 200, _METRICS_CONTENT_TYPE, body


async def _receive_request(client: Downstream) -> h11.Request | None:
    """The request head; None if the client closed first. The caller's deadline bounds it.

    h11 refuses an incomplete head larger than ``max_incomplete_event_size`` (431), but a head
    that completes within one large read would slip past that check: its size is checked
    here. The body, if any, is never read: the answer does not depend on it and the
    connection closes after it.
    """
    conn = client.h11
    while True:
        event = conn.next_event()
        if isinstance(event, h11.Request):
            if client.bytes_received - len(conn.trailing_data[0]) > MAX_REQUEST_HEAD_BYTES:
                raise h11.RemoteProtocolError("request head too large", error_status_hint=431)
            return event
        if event is not h11.NEED_DATA:  # ConnectionClosed
            return None
        conn.receive_data(await client.recv(math.inf))


def _text(status: int, message: str) -> _Answer:
    return status, _TEXT, message.encode("utf-8", "replace") + b"\n"


def _queue(client: Downstream, answer: _Answer, *, head_only: bool) -> None:
    status, content_type, body = answer
    headers = [
        (b"Content-Type", content_type),
        (b"Content-Length", b"%d" % len(body)),
        (b"Cache-Control", b"no-store"),
        (b"Connection", b"close"),
    ]
    if status == 405:
        headers.append((b"Allow", b"GET, HEAD"))
    client.queue(h11.Response(status_code=status, headers=headers))
    if not head_only:  # h11 frames a HEAD answer with no body, and refuses one
        client.queue(h11.Data(data=body))
    client.queue(h11.EndOfMessage())
