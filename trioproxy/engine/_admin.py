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

Other paths get 404, other methods 405. The server is a few dozen lines rather than an ASGI
server: the head is read by the proxy's own strict reader, the routing and the answers are
`core._adminanswers` (shared with the supervisor's admin), every read and write has a deadline,
a request head is at most `MAX_REQUEST_HEAD_BYTES`, and at most `MAX_CONNECTIONS` connections
are served at once.

The platform routes only port 80 into the container, and the admin endpoints tell anyone who
can reach them about the upstream and the traffic: they must stay on loopback. The config
loader already rejects other addresses; `open_admin_listener` checks again, on what the address
resolves to and on what was actually bound, so Settings built in code cannot get around it.
"""

from __future__ import annotations

import inspect
import logging
import math
import socket
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from typing import TYPE_CHECKING

import trio

from ..core import _adminanswers as answers
from ..core._addr import format_host_port
from ..core._admincontrol import JSON, MAX_BODY_BYTES, AdminControl, body_length, error
from ..core._errors import ClientError, ClientGone, ProxyError
from ..core._strict import FramingError
from ._adminbind import MAX_CONNECTIONS, AdminListenError, bind_admin_socket
from ._exposition import exposition
from ._listen import accept_forever, as_listener
from ._peer import Wire
from ._transport import Transport, connect_socket

if TYPE_CHECKING:
    from ._metrics import MetricsSnapshot

__all__ = [
    "MAX_CONNECTIONS",
    "AdminListenError",
    "AdminServer",
    "check_upstream",
    "open_admin_listener",
]

log = logging.getLogger("trioproxy")


def open_admin_listener(address: str) -> trio.SocketListener:
    """Bind ``HOST:PORT`` for the admin listener, refusing anything but loopback.

    Synchronous, like `open_listener`: it works before ``trio.run`` (the command binds its
    addresses first, so that a bad one is one line on stderr) and inside it.
    """
    return trio.SocketListener(trio.socket.from_stdlib_socket(bind_admin_socket(address)))


async def check_upstream(
    host: str, port: int, *, timeout_s: float = answers.READY_TIMEOUT_S
) -> str | None:
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
            return answers.unresolved(upstream, exc)
        phase = "connecting to"
        errors: list[str] = []
        for family, _, _, _, sockaddr in infos:
            try:
                transport = await connect_socket(family, sockaddr)
            except OSError as exc:
                errors.append(answers.connect_error(format_host_port(*sockaddr[:2]), exc))
                continue
            transport.close()
            return None
        return answers.unreachable(upstream, errors)
    return answers.timed_out(upstream, phase, timeout_s)


class AdminServer:
    """Serves the admin endpoints on one listener until cancelled."""

    def __init__(
        self,
        *,
        is_draining: Callable[[], bool],
        upstream: tuple[str, int],
        metrics_snapshot: Callable[[], MetricsSnapshot | Awaitable[MetricsSnapshot]],
        ready_timeout_s: float = answers.READY_TIMEOUT_S,
        io_timeout_s: float = answers.IO_TIMEOUT_S,
        control: AdminControl | None = None,
    ) -> None:
        self._is_draining = is_draining
        self._upstream = upstream
        # Copies every number, on the event loop; the copy is formatted in a worker thread.
        self._metrics_snapshot = metrics_snapshot
        self._ready_timeout_s = ready_timeout_s
        self._io_timeout_s = io_timeout_s
        self._slots = trio.Semaphore(MAX_CONNECTIONS)
        self._control = control  # /journal and /faults, for test harnesses
        self._routes: dict[bytes, Callable[[], Awaitable[answers.Answer]]] = {
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
        client = _AdminClient(transport)
        method, head, allow = b"", None, b"GET, HEAD"
        answer: answers.Answer | Iterator[bytes] | None = None  # (a journal read: its body)
        try:
            with trio.move_on_after(self._io_timeout_s) as reading:
                head, rest = await _receive_head(client)
                if head is not None:
                    method, target, _ = head[: head.index(b"\r\n")].split(b" ", 2)
                    path = target.partition(b"?")[0]
                    if self._control is not None and self._control.handles(path):
                        allow = self._control.allowed(path)
                        answer = await self._control_answer(client, method, target, head, rest)
        except FramingError as exc:  # malformed or oversized (400, 414, 431)
            answer = answers.bad_request(exc)
        else:
            if head is None or reading.cancelled_caught:  # closed early, or silent too long
                return
            if answer is None:
                method, endpoint = answers.route(head)
                # /readyz bounds its own wait
                answer = await self._routes[endpoint]() if isinstance(endpoint, bytes) else endpoint
        if isinstance(answer, tuple):
            out = [answers.render(answer, head_only=method == b"HEAD", allow=allow)]
        else:
            out = await _journal_answer(answer, head_only=method == b"HEAD")
        # One deadline for the whole answer: a reader taking a byte now and then must not
        # hold one of the few admin slots for ever (each wait alone would restart it).
        with trio.move_on_after(self._io_timeout_s) as sending:
            for data in out:
                await client.send_all(data, math.inf)
        if not sending.cancelled_caught:
            await client.linger(answers.LINGER_S, answers.LINGER_MAX_BYTES)

    async def _control_answer(
        self, client: _AdminClient, method: bytes, target: bytes, head: bytes, rest: bytes
    ) -> answers.Answer | Iterator[bytes]:
        assert self._control is not None
        body = await _receive_body(client, head, rest)
        if isinstance(body, tuple):
            return body
        # A journal read (or clear) is rendered later (`_journal_answer`), outside the read's
        # deadline.
        pieces = self._control.in_slices(method, target)
        return pieces if pieces is not None else self._control.answer(method, target, body)

    async def _healthz(self) -> answers.Answer:
        return answers.text(503, "draining") if self._is_draining() else answers.text(200, "ok")

    async def _readyz(self) -> answers.Answer:
        if self._is_draining():
            return answers.text(503, "draining")
        problem = await check_upstream(*self._upstream, timeout_s=self._ready_timeout_s)
        return answers.text(200, "ready") if problem is None else answers.text(503, problem)

    async def _metrics(self) -> answers.Answer:
        # The copy is taken here, on the event loop where the counters change, so it is
        # consistent; formatting it (milliseconds for thousands of series) runs in a thread
        # so that the proxy's requests do not wait for a scrape.
        snapshot = self._metrics_snapshot()
        if inspect.isawaitable(snapshot):  # the supervisor's: it asks its workers
            snapshot = await snapshot
        body = await trio.to_thread.run_sync(partial(exposition, snapshot))
        return 200, answers.METRICS_CONTENT_TYPE, body


class _AdminClient(Wire):
    """A probe's or scraper's connection."""

    __slots__ = ()

    def _gone(self, exc: BaseException) -> Exception:
        return ClientGone(f"admin client connection lost: {exc}")

    def _too_slow(self, doing: str) -> Exception:
        return ClientError(f"admin client too slow {doing}", status=408)


async def _journal_answer(pieces: Iterator[bytes], *, head_only: bool) -> list[bytes]:
    """A journal read's (or clear's) answer, head first. A full journal takes seconds to
    render, and one step that long would stall every other client: the body is rendered a
    piece (a bounded amount of work) at a time, with a checkpoint after each, then measured
    for the head."""
    body: list[bytes] = []
    for piece in pieces:
        body.append(piece)
        await trio.lowlevel.checkpoint()
    head = answers.render_head(200, JSON, sum(map(len, body)))
    return [head] if head_only else [head, *body]


async def _receive_head(client: _AdminClient) -> tuple[bytes | None, bytes]:
    """The request head, strictly checked, and the bytes read past it; None if the client
    closed first. The caller's deadline bounds it, the reader's limit its size. The body is
    read only by the endpoints that take one (`_receive_body`): the others' answers do not
    depend on it and the connection closes after them."""
    reader = answers.head_reader()
    while (end := reader.head_end()) < 0:
        data = await client.recv(math.inf)
        if not data:
            return None, b""
        reader.add(data)
    return bytes(reader.buffer[:end]), bytes(reader.buffer[end:])


async def _receive_body(client: _AdminClient, head: bytes, rest: bytes) -> bytes | answers.Answer:
    """The request body (Content-Length framed, at most `MAX_BODY_BYTES`), or the answer
    refusing it. The caller's deadline bounds it."""
    length = body_length(head)
    if length < 0:
        return error(411, "send the body with Content-Length, not chunked")
    if length > MAX_BODY_BYTES:
        return error(413, f"a body of {length} bytes; at most {MAX_BODY_BYTES}")
    body = bytearray(rest[:length])
    while len(body) < length:
        data = await client.recv(math.inf)
        if not data:
            raise ClientGone("admin client closed before its body ended")
        body += data[: length - len(body)]
    return bytes(body)
