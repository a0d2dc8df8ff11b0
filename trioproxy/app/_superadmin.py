"""The admin endpoints of the ``--workers N`` supervisor, without trio: a thread per probe.

The same three paths and answers as `_admin` (``/healthz``, ``/readyz``, ``/metrics``; GET and
HEAD; 404 for other paths, 405 for other methods, one request per connection), for a process
that must stay small: no trio, no h11. What both decide alike (the head reader, the routing,
the answers) is `core._adminanswers`; this module is the blocking I/O around it. The
supervisor's loop accepts (`serve_one`); each connection is served in a thread of its own, at
most `MAX_CONNECTIONS` at once (one more is closed unanswered, as a full backlog would), with
a deadline on every read and write.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable

from ..core._addr import format_host_port
from ..core._adminanswers import (
    IO_TIMEOUT_S,
    LINGER_MAX_BYTES,
    LINGER_S,
    MAX_REQUEST_HEAD_BYTES,
    METRICS_CONTENT_TYPE,
    READY_TIMEOUT_S,
    Answer,
    bad_request,
    head_reader,
    render,
    route,
    text,
    timed_out,
    unreachable,
)
from ..core._strict import FramingError
from ..engine._adminbind import MAX_CONNECTIONS

__all__ = ["SupervisorAdmin", "check_upstream"]

log = logging.getLogger("trioproxy")


class SupervisorAdmin:
    """Answers the admin endpoints for the whole container."""

    def __init__(
        self,
        listener: socket.socket,
        *,
        healthy: Callable[[], bool],
        upstream: tuple[str, int],
        metrics: Callable[[], bytes],
    ) -> None:
        self.listener = listener
        self._healthy = healthy
        self._upstream = upstream
        self._metrics = metrics
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        listener.setblocking(False)

    def serve_one(self) -> None:
        """Accept one connection (the listener is readable) and serve it in a thread."""
        try:
            conn, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # out of descriptors: the next readable event retries
            log.error("admin: accept failed (%s)", exc.strerror)
            return
        if not self._slots.acquire(blocking=False):
            conn.close()
            return
        threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            conn.setblocking(True)
            self._serve(conn)
        except OSError:
            pass  # the client went away, or was too slow
        except Exception as exc:  # nothing may take the supervisor down
            log.error("admin: internal error: %r", exc)
        finally:
            self._slots.release()
            conn.close()

    def _serve(self, conn: socket.socket) -> None:
        method = b""
        try:
            head = _read_head(conn, time.monotonic() + IO_TIMEOUT_S)
        except FramingError as exc:  # malformed or oversized (400, 414, 431)
            answer = bad_request(exc)
        else:
            if head is None:
                return  # closed early, or silent past the deadline: nobody to answer
            method, endpoint = route(head)
            answer = self._answer(endpoint) if isinstance(endpoint, bytes) else endpoint
        conn.settimeout(IO_TIMEOUT_S)
        conn.sendall(render(answer, head_only=method == b"HEAD"))
        conn.shutdown(socket.SHUT_WR)
        _linger(conn)

    def _answer(self, endpoint: bytes) -> Answer:
        if endpoint == b"/metrics":
            return 200, METRICS_CONTENT_TYPE, self._metrics()
        if not self._healthy():
            return text(503, "not every worker is accepting (starting, restarting or draining)")
        if endpoint == b"/healthz":
            return text(200, "ok")
        problem = check_upstream(*self._upstream)
        return text(200, "ready") if problem is None else text(503, problem)


def check_upstream(host: str, port: int, *, timeout_s: float = READY_TIMEOUT_S) -> str | None:
    """As `_admin.check_upstream`, blocking: None if ``host`` resolves and a new TCP
    connection to it opens within ``timeout_s``; otherwise why not, in one line."""
    upstream = format_host_port(host, port)
    deadline = time.monotonic() + timeout_s
    found: list[object] = []

    def resolve() -> None:  # getaddrinfo has no timeout of its own: a thread waits for it
        try:
            found.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as exc:
            found.append(exc)

    resolver = threading.Thread(target=resolve, daemon=True)
    resolver.start()
    resolver.join(timeout_s)
    if not found:
        return timed_out(upstream, "resolving", timeout_s)
    if isinstance(found[0], OSError):
        return f"upstream {upstream} does not resolve: {found[0]}"
    errors: list[str] = []
    infos: list[tuple[int, int, int, str, tuple[str, int]]] = found[0]  # type: ignore[assignment]
    for family, _, _, _, sockaddr in infos:
        left = deadline - time.monotonic()
        if left <= 0:
            return timed_out(upstream, "connecting to", timeout_s)
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(left)
            try:
                sock.connect(sockaddr)
            except TimeoutError:
                return timed_out(upstream, "connecting to", timeout_s)
            except OSError as exc:
                reason = os.strerror(exc.errno) if exc.errno else str(exc)
                errors.append(f"{format_host_port(*sockaddr[:2])}: {reason}")
                continue
        return None
    return unreachable(upstream, errors)


def _read_head(conn: socket.socket, deadline: float) -> bytes | None:
    """The request head, strictly checked, read one byte beyond the limit at most; None if
    the client closed first or was silent past the deadline. FramingError if refused."""
    reader = head_reader()
    while (end := reader.head_end()) < 0:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        conn.settimeout(left)
        try:
            data = conn.recv(MAX_REQUEST_HEAD_BYTES + 1 - len(reader.buffer))
        except TimeoutError:
            return None
        if not data:
            return None
        reader.add(data)
    return bytes(reader.buffer[:end])


def _linger(conn: socket.socket) -> None:
    """Read what the client still sends, briefly, so that closing sends no reset that could
    destroy the answer (as `_admin._linger`)."""
    drained = 0
    deadline = time.monotonic() + LINGER_S
    with contextlib.suppress(OSError):
        while drained < LINGER_MAX_BYTES and (left := deadline - time.monotonic()) > 0:
            conn.settimeout(left)
            data = conn.recv(65536)
            if not data:
                return
            drained += len(data)
