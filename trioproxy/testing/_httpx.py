"""httpx over a memory world: httpx's own transport, its connections memory streams.

httpcore, under httpx, takes a network backend; this one opens connections with the world's
``open`` and maps the stream's errors and deadlines to httpcore's, as its trio backend maps a
socket's. So retries, timeouts and pooling are httpx's own, and run on the world's clock.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import httpcore
import httpx
import trio

__all__ = ["memory_transport"]


class _Stream(httpcore.AsyncNetworkStream):
    def __init__(self, stream: trio.abc.HalfCloseableStream) -> None:
        self._stream = stream

    # httpcore's interface names the timeout; it is applied here, as its trio backend does.
    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        with _deadline(timeout, httpcore.ReadTimeout):
            try:
                return bytes(await self._stream.receive_some(max_bytes))
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise httpcore.ReadError(str(exc)) from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        if not buffer:
            return
        with _deadline(timeout, httpcore.WriteTimeout):
            try:
                await self._stream.send_all(buffer)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise httpcore.WriteError(str(exc)) from exc

    async def aclose(self) -> None:
        await self._stream.aclose()

    def get_extra_info(self, info: str) -> Any:
        return None


@contextmanager
def _deadline(timeout: float | None, error: type[Exception]) -> Iterator[None]:
    """``timeout`` seconds (None: none) on the world's clock, then ``error``."""
    with trio.move_on_after(math.inf if timeout is None else timeout) as scope:
        yield
    if scope.cancelled_caught:
        raise error(f"timed out after {timeout:g}s")


class _Backend(httpcore.AsyncNetworkBackend):
    def __init__(self, open_stream: Callable[[], trio.abc.HalfCloseableStream]) -> None:
        self._open = open_stream

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - a memory connect never waits
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        await trio.lowlevel.checkpoint()
        return _Stream(self._open())

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("a memory world has no unix sockets")

    async def sleep(self, seconds: float) -> None:
        await trio.sleep(seconds)


def memory_transport(
    open_stream: Callable[[], trio.abc.HalfCloseableStream], **options: Any
) -> httpx.AsyncHTTPTransport:
    """`httpx.AsyncHTTPTransport` with ``options``, its connections from ``open_stream``."""
    transport = httpx.AsyncHTTPTransport(**options)
    pool = getattr(transport, "_pool", None)
    if not isinstance(pool, httpcore.AsyncConnectionPool):  # httpx moved its internals
        raise RuntimeError(
            f"trioproxy.testing cannot put httpx {httpx.__version__}'s transport on memory"
            " streams (no httpcore pool at AsyncHTTPTransport._pool)"
        )
    limits = options.get("limits", httpx.Limits())
    transport._pool = httpcore.AsyncConnectionPool(
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        retries=options.get("retries", 0),
        network_backend=_Backend(open_stream),
    )
    return transport
