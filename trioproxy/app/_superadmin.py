"""The admin endpoints of the ``--workers N`` supervisor, without trio: a thread per probe.

The same three paths and answers as `_admin` (``/healthz``, ``/readyz``, ``/metrics``; GET and
HEAD; 404 for other paths, 405 for other methods, one request per connection), for a process
that must stay small: no trio, no h11. What both decide alike (the head reader, the routing,
the answers) is `core._adminanswers`; this module is the blocking I/O around it. The
supervisor's loop accepts (`serve_one`); each connection is served in a thread of its own, at
most `MAX_CONNECTIONS` at once (one more is closed unanswered, as a full backlog would), with
a deadline on every read and write. The harness endpoints (/faults, /journal) are relayed to
the workers (``control``: `Supervisor.control`, then `_supercontrol.merge`).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable

from ..core import _adminanswers as answers
from ..core._addr import format_host_port
from ..core._strict import FramingError
from ..engine._adminbind import MAX_CONNECTIONS
from ._supercontrol import error

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
        control: Callable[[bytes, bytes, bytes], answers.Answer] | None = None,
    ) -> None:
        """``control`` answers the harness endpoints (/faults, /journal) for the whole
        container: (method, target, body) relayed to every worker (`_supercontrol`)."""
        self.listener = listener
        self._healthy = healthy
        self._upstream = upstream
        self._metrics = metrics
        self._control = control
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
        method, allow = b"", b"GET, HEAD"
        deadline = time.monotonic() + answers.IO_TIMEOUT_S
        try:
            head, rest = _read_head(conn, deadline)
        except FramingError as exc:  # malformed or oversized (400, 414, 431)
            answer = answers.bad_request(exc)
        else:
            if head is None:
                return  # closed early, or silent past the deadline: nobody to answer
            method, target, _ = head[: head.index(b"\r\n")].split(b" ", 2)
            path = target.partition(b"?")[0]
            if self._control is not None and answers.is_control_path(path):
                allow = answers.control_allowed(path)
                body = _read_body(conn, head, rest, deadline)
                if body is None:
                    return  # closed early, or silent past the deadline
                answer = body if isinstance(body, tuple) else self._control(method, target, body)
            else:
                method, endpoint = answers.route(head)
                answer = self._answer(endpoint) if isinstance(endpoint, bytes) else endpoint
        conn.settimeout(answers.IO_TIMEOUT_S)
        conn.sendall(answers.render(answer, head_only=method == b"HEAD", allow=allow))
        conn.shutdown(socket.SHUT_WR)
        _linger(conn)

    def _answer(self, endpoint: bytes) -> answers.Answer:
        if endpoint == b"/metrics":
            return 200, answers.METRICS_CONTENT_TYPE, self._metrics()
        if not self._healthy():
            return answers.text(
                503, "not every worker is accepting (starting, restarting or draining)"
            )
        if endpoint == b"/healthz":
            return answers.text(200, "ok")
        problem = check_upstream(*self._upstream)
        return answers.text(200, "ready") if problem is None else answers.text(503, problem)


def check_upstream(
    host: str, port: int, *, timeout_s: float = answers.READY_TIMEOUT_S
) -> str | None:
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
        return answers.timed_out(upstream, "resolving", timeout_s)
    if isinstance(found[0], OSError):
        return answers.unresolved(upstream, found[0])
    errors: list[str] = []
    infos: list[tuple[int, int, int, str, tuple[str, int]]] = found[0]  # type: ignore[assignment]
    for family, _, _, _, sockaddr in infos:
        left = deadline - time.monotonic()
        if left <= 0:
            return answers.timed_out(upstream, "connecting to", timeout_s)
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(left)
            try:
                sock.connect(sockaddr)
            except TimeoutError:
                return answers.timed_out(upstream, "connecting to", timeout_s)
            except OSError as exc:
                errors.append(answers.connect_error(format_host_port(*sockaddr[:2]), exc))
                continue
        return None
    return answers.unreachable(upstream, errors)


def _read_head(conn: socket.socket, deadline: float) -> tuple[bytes | None, bytes]:
    """The request head, strictly checked, read one byte beyond the limit at most, and the
    bytes read past it; None if the client closed first or was silent past the deadline.
    FramingError if refused."""
    reader = answers.head_reader()
    while (end := reader.head_end()) < 0:
        data = _recv(conn, answers.MAX_REQUEST_HEAD_BYTES + 1 - len(reader.buffer), deadline)
        if not data:
            return None, b""
        reader.add(data)
    return bytes(reader.buffer[:end]), bytes(reader.buffer[end:])


def _read_body(
    conn: socket.socket, head: bytes, rest: bytes, deadline: float
) -> bytes | answers.Answer | None:
    """A harness endpoint's request body (Content-Length framed, at most `MAX_BODY_BYTES`),
    or the answer refusing it; None if the client closed first or was silent past the
    deadline (as `_admin._receive_body`)."""
    length = answers.body_length(head)
    if length < 0:
        return error(411, "send the body with Content-Length, not chunked")
    if length > answers.MAX_BODY_BYTES:
        return error(413, f"a body of {length} bytes; at most {answers.MAX_BODY_BYTES}")
    body = bytearray(rest[:length])
    while len(body) < length:
        data = _recv(conn, length - len(body), deadline)
        if not data:
            return None
        body += data
    return bytes(body)


def _recv(conn: socket.socket, size: int, deadline: float) -> bytes:
    """Up to ``size`` bytes; b"" at end of file or past the deadline."""
    left = deadline - time.monotonic()
    if left <= 0:
        return b""
    conn.settimeout(left)
    try:
        return conn.recv(size)
    except TimeoutError:
        return b""


def _linger(conn: socket.socket) -> None:
    """Read what the client still sends, briefly, so that closing sends no reset that could
    destroy the answer (as `_admin._linger`)."""
    drained = 0
    deadline = time.monotonic() + answers.LINGER_S
    with contextlib.suppress(OSError):
        while drained < answers.LINGER_MAX_BYTES and (left := deadline - time.monotonic()) > 0:
            conn.settimeout(left)
            data = conn.recv(65536)
            if not data:
                return
            drained += len(data)
