"""A whole-body view for a body hook point, up to a declared size: never an unbounded buffer."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ._api import Exchange

__all__ = ["whole_body"]

log = logging.getLogger("trioproxy")

WholeBody = Callable[..., Awaitable[bytes]]  # (self?, exchange, body) -> the new body
_PASSING = object()  # the body outgrew max_bytes: the rest passes unchanged


def whole_body(max_bytes: int) -> Callable[[WholeBody], Callable[..., Awaitable[bytes]]]:
    """Make ``async def f(exchange, body) -> bytes`` a ``request_body``/``response_body``
    hook point that sees the whole body at once, when it is at most ``max_bytes``::

        class Rewrite:
            @whole_body(max_bytes=65536)
            async def response_body(self, exchange, body):
                return body.replace(b"http://", b"https://")

    The slices are held (at most ``max_bytes``) and nothing is forwarded until the end. A
    body that grows past ``max_bytes`` is passed on unchanged from then on, ``f`` is not
    called, and one diagnostics line says so: memory stays bounded whatever the body.
    """
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
        raise ValueError(f"max_bytes must be a non-negative int, found {max_bytes!r}")

    def wrap(function: WholeBody) -> Callable[..., Awaitable[bytes]]:
        key = f"trioproxy.whole_body.{id(function)}"  # one buffer per decorated point

        @functools.wraps(function)
        async def point(*args: Any) -> bytes:
            *bound, exchange, chunk, end = args
            assert isinstance(exchange, Exchange)
            held = exchange.state.get(key)
            if held is _PASSING:
                return bytes(chunk)
            if held is None:
                held = exchange.state[key] = bytearray()
            held += chunk
            if len(held) > max_bytes:
                exchange.state[key] = _PASSING
                log.warning(
                    "hook %s: body over max_bytes (%d): passed on unchanged (request %s)",
                    exchange.hook,
                    max_bytes,
                    exchange.request.request_id,
                )
                return bytes(held)
            if not end:
                return b""
            del exchange.state[key]
            return await function(*bound, exchange, bytes(held))

        return point

    return wrap
