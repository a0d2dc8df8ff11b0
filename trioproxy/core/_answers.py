"""The proxy's own answers: complete plain-text responses (403, 429, redirects, static).

Pure: no I/O and no trio.
"""

from __future__ import annotations

from typing import Final

from ._headers import TEXT_PLAIN, reason_phrase
from ._rulemodel import Response

__all__ = ["FORBIDDEN", "text_response"]


def text_response(
    status: int, headers: tuple[tuple[bytes, bytes], ...] = (), body: bytes | None = None
) -> Response:
    """An answer with a plain-text body (by default "403 Forbidden") and its framing."""
    if body is None:
        body = b"%d %s\n" % (status, reason_phrase(status, b""))
    framing: tuple[tuple[bytes, bytes], ...] = ()
    if status not in (204, 304):  # no body, and no Content-Length either (RFC 9110 8.6)
        framing = ((b"Content-Length", b"%d" % len(body)),)
        if body and not any(name.lower() == b"content-type" for name, _ in headers):
            framing = ((b"Content-Type", TEXT_PLAIN), *framing)
    return Response(status, (*headers, *framing), body)


def _too_many_requests(retry_after: int) -> Response:
    return text_response(429, ((b"Retry-After", b"%d" % retry_after),))


FORBIDDEN: Final = text_response(403)
