"""The admin endpoints of the ``--workers N`` supervisor, without trio: a thread per probe.

The same three paths and answers as `_admin` (``/healthz``, ``/readyz``, ``/metrics``; GET and
HEAD; 404 for other paths, 405 for other methods, one request per connection), for a process
that must stay small: no trio, no h11. The supervisor's loop accepts (`serve_one`); each
connection is served in a thread of its own, at most `MAX_CONNECTIONS` at once (one more is
closed unanswered, as a full backlog would), with a deadline on every read and write.
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
from ..engine._adminbind import MAX_CONNECTIONS

__all__ = ["SupervisorAdmin", "check_upstream"]

log = logging.getLogger("trioproxy")

READY_TIMEOUT_S = 2.0  # as `_admin`
IO_TIMEOUT_S = 5.0
LINGER_S = 1.0
LINGER_MAX_BYTES = 65536
MAX_REQUEST_HEAD_BYTES = 8192

_METRICS_CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
_TEXT = b"text/plain; charset=utf-8"
_REASONS = {
    200: b"OK",
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    503: b"Service Unavailable",
}

_Answer = tuple[int, bytes, bytes]  # status, content type, body


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
        deadline = time.monotonic() + IO_TIMEOUT_S
        head = _read_head(conn, deadline)
        if head is None:
            return  # closed early, or silent past the deadline: nobody to answer
        method = b""
        if len(head) > MAX_REQUEST_HEAD_BYTES:
            answer = _text(431, "bad request: request head too large")
        else:
            request_line = head.split(b"\r\n", 1)[0]
            parts = request_line.split(b" ")
            if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
                answer = _text(400, "bad request: malformed request line")
            else:
                method = parts[0]
                answer = self._answer(method, parts[1])
        conn.settimeout(IO_TIMEOUT_S)
        conn.sendall(_render(answer, head_only=method == b"HEAD"))
        conn.shutdown(socket.SHUT_WR)
        _linger(conn)

    def _answer(self, method: bytes, target: bytes) -> _Answer:
        path = target.partition(b"?")[0]
        if path not in (b"/healthz", b"/readyz", b"/metrics"):
            return _text(404, "not found; try /healthz, /readyz or /metrics")
        if method not in (b"GET", b"HEAD"):
            return _text(405, "method not allowed; use GET")
        if path == b"/metrics":
            return 200, _METRICS_CONTENT_TYPE, self._metrics()
        if not self._healthy():
            return _text(503, "not every worker is accepting (starting, restarting or draining)")
        if path == b"/healthz":
            return _text(200, "ok")
        problem = check_upstream(*self._upstream)
        return _text(200, "ready") if problem is None else _text(503, problem)


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
        return f"upstream {upstream}: timed out resolving it after {timeout_s:g}s"
    if isinstance(found[0], OSError):
        return f"upstream {upstream} does not resolve: {found[0]}"
    errors: list[str] = []
    infos: list[tuple[int, int, int, str, tuple[str, int]]] = found[0]  # type: ignore[assignment]
    for family, _, _, _, sockaddr in infos:
        left = deadline - time.monotonic()
        if left <= 0:
            return f"upstream {upstream}: timed out connecting to it after {timeout_s:g}s"
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(left)
            try:
                sock.connect(sockaddr)
            except TimeoutError:
                return f"upstream {upstream}: timed out connecting to it after {timeout_s:g}s"
            except OSError as exc:
                reason = os.strerror(exc.errno) if exc.errno else str(exc)
                errors.append(f"{format_host_port(*sockaddr[:2])}: {reason}")
                continue
        return None
    return f"cannot connect to upstream {upstream}: {'; '.join(errors) or 'no address'}"


def _read_head(conn: socket.socket, deadline: float) -> bytes | None:
    """The request head, up to its blank line; one byte more than the limit at most; None
    if the client closed first or was silent past the deadline."""
    head = b""
    while b"\r\n\r\n" not in head:
        if len(head) > MAX_REQUEST_HEAD_BYTES:
            return head
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        conn.settimeout(left)
        try:
            data = conn.recv(MAX_REQUEST_HEAD_BYTES + 1 - len(head))
        except TimeoutError:
            return None
        if not data:
            return None
        head += data
    return head


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


def _text(status: int, message: str) -> _Answer:
    return status, _TEXT, message.encode("utf-8", "replace") + b"\n"


def _render(answer: _Answer, *, head_only: bool) -> bytes:
    status, content_type, body = answer
    lines = [
        b"HTTP/1.1 %d %s" % (status, _REASONS.get(status, b"")),
        b"Content-Type: " + content_type,
        b"Content-Length: %d" % len(body),
        b"Cache-Control: no-store",
        b"Connection: close",
    ]
    if status == 405:
        lines.append(b"Allow: GET, HEAD")
    return b"\r\n".join(lines) + b"\r\n\r\n" + (b"" if head_only else body)
