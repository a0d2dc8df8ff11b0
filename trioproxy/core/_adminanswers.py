"""The admin endpoints' shared decisions: limits, routing, text answers, the rendered bytes.

Pure (stdlib only): both admin servers use it, the proxy's on trio (`engine._admin`) and the
``--workers N`` supervisor's on threads (`app._superadmin`), which must import neither trio
nor h11. They keep only the I/O: read a head (`head_reader`), answer, close.
"""

from __future__ import annotations

import os
import re

from ._headers import TEXT_PLAIN, reason_phrase
from ._headreader import FixedLimits, HeadReader, RequestHeadReader
from ._strict import FramingError

__all__ = [
    "ENDPOINTS",
    "IO_TIMEOUT_S",
    "LINGER_MAX_BYTES",
    "LINGER_S",
    "MAX_REQUEST_HEAD_BYTES",
    "METRICS_CONTENT_TYPE",
    "READY_TIMEOUT_S",
    "Answer",
    "bad_request",
    "body_length",
    "connect_error",
    "control_allowed",
    "head_reader",
    "is_control_path",
    "render",
    "render_head",
    "route",
    "text",
    "timed_out",
    "unreachable",
    "unresolved",
]

# Kubernetes' probes give up after 1 s by default (timeoutSeconds); a readiness check that
# cannot connect within 2 s reports not ready either way, with a reason a person can read.
READY_TIMEOUT_S = 2.0
# Reading a request head and writing an answer: probes and scrapers are local and quick.
IO_TIMEOUT_S = 5.0
# After answering: how long, and how much, to read what a client still sends (a reset on
# close with unread input could destroy the answer; nginx's lingering_close).
LINGER_S = 1.0
LINGER_MAX_BYTES = 65536
# Probes and scrapers send a request line and a few headers; anything larger is not one of them.
MAX_REQUEST_HEAD_BYTES = 8192
_LIMITS = FixedLimits(MAX_REQUEST_HEAD_BYTES, MAX_REQUEST_HEAD_BYTES, max_header_count=100)

ENDPOINTS = (b"/healthz", b"/readyz", b"/metrics")

# generate_latest writes the 0.0.4 text format whatever prometheus-client's "latest" is.
METRICS_CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"

Answer = tuple[int, bytes, bytes]  # status, content type, body

# The harness endpoints (`_admincontrol`): a fault as JSON is a few hundred bytes; a body
# beyond this is not one.
MAX_BODY_BYTES = 65536
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*([0-9]+)[ \t]*\r\n", re.IGNORECASE)
_CHUNKED = re.compile(rb"\r\ntransfer-encoding:", re.IGNORECASE)


def is_control_path(path: bytes) -> bool:
    """A harness endpoint's path: /journal, /faults, /faults/NAME."""
    return path in (b"/journal", b"/faults") or path.startswith(b"/faults/")


def control_allowed(path: bytes) -> bytes:
    """The methods a harness endpoint's path takes (the 405's Allow)."""
    if path == b"/faults":
        return b"GET, HEAD, POST, DELETE"
    return b"GET, HEAD, DELETE" if path == b"/journal" else b"DELETE"


def body_length(head: bytes) -> int:
    """The request body's length from a strictly checked head (its Content-Length, one at
    most by then); -1 for a chunked body, which the admin endpoints do not take."""
    if _CHUNKED.search(head):
        return -1
    found = _CONTENT_LENGTH.search(head + b"\r\n")
    return int(found.group(1)) if found else 0


def head_reader() -> HeadReader:
    """A reader for one admin request head: strict, at most `MAX_REQUEST_HEAD_BYTES` (a whole
    head over it is refused however it arrived, in one read or many)."""
    return RequestHeadReader(bytearray(), _LIMITS)


def route(head: bytes | bytearray) -> tuple[bytes, bytes | Answer]:
    """The method of a strictly valid request head, and the endpoint its target names (one
    of `ENDPOINTS`), or the 404 or 405 answer."""
    method, target, _ = bytes(head[: head.index(b"\r\n")]).split(b" ", 2)
    path = target.partition(b"?")[0]
    if path not in ENDPOINTS:
        return method, text(404, "not found; try /healthz, /readyz or /metrics")
    if method not in (b"GET", b"HEAD"):
        return method, text(405, "method not allowed; use GET")
    return method, path


def unreachable(upstream: str, errors: list[str]) -> str:
    """Why a readiness check failed to connect, in one line; ``errors`` has one entry for
    each address tried ("ADDRESS: reason")."""
    if len(errors) == 1:  # the address once, as the proxy's own stderr line says it
        return f"cannot connect to upstream {errors[0]}"
    return f"cannot connect to upstream {upstream}: {'; '.join(errors) or 'no address'}"


def connect_error(address: str, exc: OSError) -> str:
    """One entry of `unreachable`'s ``errors``: the address tried (HOST:PORT) and why it
    failed."""
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return f"{address}: {reason}"


def unresolved(upstream: str, exc: OSError) -> str:
    return f"upstream {upstream} does not resolve: {exc}"


def timed_out(upstream: str, phase: str, timeout_s: float) -> str:
    """Why a readiness check gave up: ``phase`` is "resolving" or "connecting to"."""
    return f"upstream {upstream}: timed out {phase} it after {timeout_s:g}s"


def bad_request(exc: FramingError) -> Answer:
    """The answer to a head the reader refused: its status (400, 414, 431 or 501)."""
    return text(exc.status, f"bad request: {exc}")


def text(status: int, message: str) -> Answer:
    return status, TEXT_PLAIN, message.encode("utf-8", "replace") + b"\n"


def render(answer: Answer, *, head_only: bool, allow: bytes = b"GET, HEAD") -> bytes:
    """The whole response, head and body (none for HEAD), on a connection that closes after;
    ``allow`` is a 405's Allow."""
    status, content_type, body = answer
    head = render_head(status, content_type, len(body), allow)
    return head if head_only else head + body


def render_head(
    status: int, content_type: bytes, length: int, allow: bytes = b"GET, HEAD"
) -> bytes:
    """`render`'s head alone, for a body of ``length`` bytes sent after it."""
    lines = [
        b"HTTP/1.1 %d %s" % (status, reason_phrase(status, b"")),
        b"Content-Type: " + content_type,
        b"Content-Length: %d" % length,
        b"Cache-Control: no-store",
        b"Connection: close",
    ]
    if status == 405:
        lines.append(b"Allow: " + allow)
    return b"\r\n".join(lines) + b"\r\n\r\n"
