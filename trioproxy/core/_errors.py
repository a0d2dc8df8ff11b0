"""The proxy's error vocabulary: one family, each carrying the status the client should see.

I/O errors from trio and protocol errors from h11 are translated into these once, where they
happen (`_peer.py`, `_pool.py`); everything above speaks only this vocabulary.
"""

from __future__ import annotations

import re

# Printable ASCII as is; the quote, the backslash and everything else escaped.
_READABLE = {
    **{byte: f"\\x{byte:02x}" for byte in range(256)},
    **{byte: chr(byte) for byte in range(0x20, 0x7F)},
    **{ord(c): e for c, e in (("\t", "\\t"), ("\r", "\\r"), ("\n", "\\n"))},
    **{ord(c): "\\" + c for c in '"\\'},
}
_REPR = r"""b(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")"""  # as repr() writes bytes
_BYTES_REPR = re.compile(rf"""bytearray\(({_REPR})\)|(?<![\w"])({_REPR})""")


def readable(data: bytes | bytearray) -> str:
    """Bytes as a message shows them to an operator or a client: in double quotes, escaped
    where not printable ASCII (``"X-Req\\tuest"``), never Python's ``b'...'``."""
    return '"' + data.decode("latin-1").translate(_READABLE) + '"'


def without_bytes_reprs(message: str) -> str:
    """``message`` with each Python bytes repr in it (h11 writes what it refuses as
    ``b'...'`` or ``bytearray(b'...')``) shown `readable` instead."""
    if "b'" not in message and 'b"' not in message:
        return message
    import ast  # rarely needed: only for a message that carries a repr

    def shown(match: re.Match[str]) -> str:
        try:
            return readable(ast.literal_eval(match.group(1) or match.group(2)))
        except (ValueError, SyntaxError):  # not a whole repr after all: leave it
            return match.group(0)

    return _BYTES_REPR.sub(shown, message)


class ProxyError(Exception):
    """An exchange failed; ``status`` is what the client gets if no response head was sent."""

    status: int = 502
    # Fields the proxy's answer carries besides its framing (a 503's Retry-After).
    headers: tuple[tuple[bytes, bytes], ...] = ()

    def __init__(self, message: str, *, status: int | None = None) -> None:
        # Messages relay h11's, which quote bytes as Python reprs: operators read them
        # in diagnostics, clients in error bodies.
        super().__init__(without_bytes_reprs(message))
        if status is not None:
            self.status = status


class ClientError(ProxyError):
    """The downstream request is unacceptable (malformed, too large, too slow)."""

    status = 400


class ClientGone(Exception):
    """The downstream peer closed or reset the connection: nobody is left to answer."""


class MethodNotAllowed(ProxyError):
    """A method a reverse proxy does not serve (CONNECT: we are not a forward proxy)."""

    status = 405


class UpstreamError(ProxyError):
    """The upstream failed: unreachable, reset, or spoke invalid HTTP."""

    status = 502


class UpstreamConnectError(UpstreamError):
    """No connection to the upstream could be opened (resolution or connect failure)."""


class OutOfSockets(UpstreamConnectError):
    """No socket could be opened here (out of descriptors or buffers): not the next hop's
    fault, so the circuit breaker does not count it."""


class UpstreamUnavailable(ProxyError):
    """The circuit breaker is open: the next hop refused its last connections, so the
    request is answered at once instead of waiting out another connect."""

    status = 503

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.headers = ((b"Retry-After", b"%d" % retry_after_s),)


class UpstreamTimeout(UpstreamError):
    """The upstream did not connect, answer or send in time."""

    status = 504


class UpstreamClosed(UpstreamError):
    """The upstream closed or reset the connection before sending any byte of a response.

    On a reused pooled connection this is the stale keep-alive race, which may be retried
    (the rule is in the engine's `Exchange.serve`; `UpstreamConnection.failure` decides
    which failures are this one).
    """


class PoolTimeout(ProxyError):
    """Every upstream connection stayed busy for longer than the pool wait allows."""

    status = 503
