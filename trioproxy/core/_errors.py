"""The proxy's error vocabulary: one family, each carrying the status the client should see.

I/O errors from trio and protocol errors from h11 are translated into these once, where they
happen (`_peer.py`, `_pool.py`); everything above speaks only this vocabulary.
"""

from __future__ import annotations


class ProxyError(Exception):
    """An exchange failed; ``status`` is what the client gets if no response head was sent."""

    status: int = 502

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
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


class UpstreamTimeout(UpstreamError):
    """The upstream did not connect, answer or send in time."""

    status = 504


class UpstreamClosed(UpstreamError):
    """The upstream closed or reset the connection before sending any byte of a response.

    On a reused pooled connection this is the stale keep-alive race, which may be retried
    (the rule is in the engine's `Exchange._forward`; `UpstreamConnection.failure` decides
    which failures are this one).
    """


class PoolTimeout(ProxyError):
    """Every upstream connection stayed busy for longer than the pool wait allows."""

    status = 503
