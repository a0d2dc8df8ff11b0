"""Engine test kit without sockets: the proxy, its clients and its origin on a `MemoryNetwork`.

The proxy is the real `ProxyServer`; only its transports are memory ones (the pool connects
through the network, the resolver answers a fixed address). Clients and origins see each
connection as a trio stream (`MemoryStream`), so `support.Client` and the raw-origin handlers
of the socket tests work unchanged. With ``autojump_clock`` timeouts of minutes take no time
and a run is the same every time.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio

from trioproxy.config._settings import Settings
from trioproxy.core._accesslog import AccessRecord
from trioproxy.engine._resolver import SockAddr
from trioproxy.engine._server import ProxyServer
from trioproxy.engine._transport import MemoryListener, MemoryNetwork, MemoryTransport

from .support import Client

PROXY_ADDRESS = ("192.0.2.1", 80)  # what clients connect to
ORIGIN_ADDRESS = ("192.0.2.80", 80)  # what the upstream name resolves to
UPSTREAM = ("next-hop", 80)

StreamHandler = Callable[["MemoryStream"], Awaitable[None]]


class MemoryStream(trio.abc.HalfCloseableStream):
    """A trio stream over one end of a memory connection (for test clients and origins)."""

    def __init__(self, transport: MemoryTransport) -> None:
        self.transport = transport

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        await trio.lowlevel.checkpoint()
        while view:
            try:
                taken = self.transport.write_nowait(view)
            except OSError as exc:
                raise trio.BrokenResourceError(str(exc)) from exc
            if taken is None:
                await self.transport.wait_writable()
                continue
            view = view[taken:]

    async def wait_send_all_might_not_block(self) -> None:
        await self.transport.wait_writable()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        while True:
            try:
                data = self.transport.read_nowait(max_bytes or 65536)
            except OSError as exc:
                raise trio.BrokenResourceError(str(exc)) from exc
            if data is not None:
                await trio.lowlevel.checkpoint()
                return data
            await self.transport.wait_readable()

    async def send_eof(self) -> None:
        await trio.lowlevel.checkpoint()
        self.transport.shutdown_write()

    def reset(self) -> None:
        """Close with a reset (SO_LINGER 0)."""
        self.transport.reset()

    async def aclose(self) -> None:
        self.transport.close()
        await trio.lowlevel.checkpoint()


async def fixed_lookup(host: str, port: int) -> list[SockAddr]:
    await trio.lowlevel.checkpoint()
    return [(socket.AF_INET, ORIGIN_ADDRESS)]


@dataclass
class MemoryProxy:
    server: ProxyServer
    network: MemoryNetwork
    records: list[AccessRecord] = field(default_factory=list)

    def open(self, client_ip: str = "198.51.100.7") -> MemoryStream:
        """A new client connection (it waits in the proxy's backlog until accepted)."""
        return MemoryStream(self.network.open(PROXY_ADDRESS, client_ip))

    @asynccontextmanager
    async def client(self, client_ip: str = "198.51.100.7") -> AsyncIterator[Client]:
        stream = self.open(client_ip)
        async with stream:
            yield Client(stream)


@asynccontextmanager
async def memory_origin(network: MemoryNetwork, handler: StreamHandler) -> AsyncIterator[None]:
    """Serve ``handler`` per connection at `ORIGIN_ADDRESS` until the block ends."""
    listener = network.listen(ORIGIN_ADDRESS)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_serve, listener, handler, nursery)
        try:
            yield
        finally:
            nursery.cancel_scope.cancel()
            listener.close()


async def _serve(listener: MemoryListener, handler: StreamHandler, nursery: trio.Nursery) -> None:
    while True:
        try:
            transport = await listener.accept()
        except trio.ClosedResourceError:
            return
        assert isinstance(transport, MemoryTransport)
        nursery.start_soon(_handle, handler, MemoryStream(transport))


async def _handle(handler: StreamHandler, stream: MemoryStream) -> None:
    async with stream:
        with contextlib.suppress(trio.BrokenResourceError):  # the proxy went away
            await handler(stream)


@asynccontextmanager
async def memory_proxy(
    settings: Settings | None = None, network: MemoryNetwork | None = None
) -> AsyncIterator[MemoryProxy]:
    """The real server on a memory network, access records captured."""
    network = network or MemoryNetwork()
    records: list[AccessRecord] = []
    server = ProxyServer(
        settings or Settings(),
        UPSTREAM,
        records.append,
        lookup=fixed_lookup,
        connect=network.connect,
    )
    listener = network.listen(PROXY_ADDRESS)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run, [listener])
        try:
            yield MemoryProxy(server, network, records)
        finally:
            nursery.cancel_scope.cancel()
