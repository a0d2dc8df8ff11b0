"""A memory world: the real proxy and an origin on an in-memory network, for the user's tests.

    from trioproxy.testing import memory_world

    async def test_my_client_retries(autojump_clock):
        async with memory_world(my_asgi_app) as world:
            async with world.fault(kind="answer", status=503, first=2):
                async with world.httpx_client() as client:
                    assert (await my_code(client)).ok
            world.journal.verify(ExchangeMatch(status=503), times=2)

Everything but the sockets is the production code: the proxy's `ProxyServer` with its pool,
rules, faults and journal; its transports are memory ones (`engine._memory`, held to loopback
TCP by a parity test). With the autojump clock a 120 s hang takes no wall time; with a seed
the scheduler runs ready tasks in the same order, so the same test gives the same journal.
Leaving the block checks that nothing was left open, counted or running (`LeakError` says
what was), unless the block failed: its own error is the one to see.
"""

from __future__ import annotations

import contextlib
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Any

import trio
import trio.testing

from ..app._embed import RunningProxy, _capture
from ..config._settings import Settings
from ..core._faults import Fault
from ..core._faulttable import RuntimeFault
from ..engine._journal import LiveJournal
from ..engine._memory import MemoryListener, MemoryNetwork, MemoryTransport
from ..engine._resolver import SockAddr
from ..engine._server import ProxyServer
from ..engine._transport import Transport
from ._asgi import ASGIApp, echo_app, serve_asgi
from ._virtual import seed_scheduler, virtual_time

if TYPE_CHECKING:
    import httpx

__all__ = ["LeakError", "MemoryStream", "MemoryWorld", "StreamHandler", "memory_world"]

PROXY_ADDRESS = ("192.0.2.1", 80)  # TEST-NET-1 (RFC 5737): what clients connect to
ORIGIN_ADDRESS = ("192.0.2.80", 80)  # what the upstream name resolves to
UPSTREAM = ("origin.test", 80)
CLIENT_IP = "198.51.100.7"  # TEST-NET-2
JOURNAL_SIZE = 1000
# How long leaving the block waits for the proxy to finish what the test's clients left it;
# anything still open after it is a leak. Under the autojump clock waiting costs nothing, so
# every deadline of the proxy's may pass; in real time, a few seconds.
SETTLE_S = 86_400.0
SETTLE_REAL_S = 5.0

StreamHandler = Callable[["MemoryStream"], Awaitable[None]]


class LeakError(AssertionError):
    """Something outlived the memory world's block; the message says what."""


class MemoryStream(trio.abc.HalfCloseableStream):
    """A trio stream over one end of a memory connection: a client's, or the origin's."""

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
        try:
            self.transport.shutdown_write()
        except OSError as exc:
            raise trio.BrokenResourceError(str(exc)) from exc

    def reset(self) -> None:
        """Close abruptly, as a TCP reset: the peer's next read fails."""
        self.transport.reset()

    async def aclose(self) -> None:
        self.transport.close()
        await trio.lowlevel.checkpoint()


@dataclass
class MemoryWorld:
    """The handle of one memory world (see `memory_world`)."""

    proxy: RunningProxy
    network: MemoryNetwork
    seed: int | None
    _proxy_listener: MemoryListener
    _origin_listener: MemoryListener
    _upstream: list[MemoryTransport] = field(default_factory=list)

    # --- what the test drives -----------------------------------------------------------

    @property
    def journal(self) -> LiveJournal:
        return self.proxy.journal

    @property
    def access_log(self) -> list[dict[str, str]]:
        """The access-log lines so far, parsed from the JSON the proxy would print."""
        return self.proxy.access_log

    @property
    def url(self) -> str:
        """The proxy's URL for clients of this world (`httpx_client` sends everything here)."""
        return "http://proxy.test"

    def fault(
        self, fault: Any = None, /, *, match: Mapping[str, Any] | None = None, **keys: Any
    ) -> contextlib.AbstractAsyncContextManager[RuntimeFault]:
        """A fault for the block: `RunningProxy.fault`."""
        return self.proxy.fault(fault, match=match, **keys)

    @asynccontextmanager
    async def faults(self, schedule: Sequence[Fault]) -> AsyncIterator[list[RuntimeFault]]:
        """Every fault of ``schedule`` for the block (a `strategies.fault_schedules` draw)."""
        async with contextlib.AsyncExitStack() as stack:
            yield [await stack.enter_async_context(self.fault(fault)) for fault in schedule]

    def open(self, client_ip: str = CLIENT_IP) -> MemoryStream:
        """A new client connection to the proxy, as a trio stream (close it when done)."""
        return MemoryStream(self.network.open(PROXY_ADDRESS, client_ip))

    def httpx_transport(self, **options: Any) -> httpx.AsyncBaseTransport:
        """An httpx transport whose connections are this world's: httpx's own HTTP/1.1
        (httpcore) over memory streams, so httpx-based code runs unchanged. ``options`` are
        `httpx.AsyncHTTPTransport`'s (``retries``, ``limits``)."""
        from ._httpx import memory_transport

        return memory_transport(self.open, **options)

    def httpx_client(self, **options: Any) -> httpx.AsyncClient:
        """An `httpx.AsyncClient` on `httpx_transport`, with ``base_url`` the proxy (use it
        as ``async with``: leaving closes its connections)."""
        import httpx

        transport_keys = {"retries", "limits"}
        transport = self.httpx_transport(
            **{k: options.pop(k) for k in transport_keys & set(options)}
        )
        options.setdefault("base_url", self.url)
        return httpx.AsyncClient(transport=transport, **options)

    # --- what leaving the block checks ---------------------------------------------------

    def leaks(self) -> list[str]:
        """What is open, counted or running that should not be, one line each ([]: none)."""
        server = self.proxy.server
        found = []
        clients = self._proxy_listener.open_ends(accepted=False)
        if clients:
            found.append(
                f"{len(clients)} client connection(s) still open: close the streams"
                " world.open() gave, and the httpx clients"
            )
        stats = server.ctx.stats
        if stats.connections_open:
            found.append(f"the proxy still serves {stats.connections_open} connection(s)")
        if stats.tunnels_open:
            found.append(f"the proxy still relays {stats.tunnels_open} tunnel(s)")
        pool = server.pool
        if pool.open_count != pool.idle_count:
            found.append(f"upstream connections busy: {pool!r}")
        faults = [f.name for f in server.faults]
        if faults:
            found.append(f"faults still active: {', '.join(faults)}")
        return found

    def _closed_leaks(self) -> list[str]:
        """After the proxy and origin stopped: every connection end must be closed."""
        ends = {
            "proxy's client-side": self._proxy_listener.open_ends(accepted=True),
            "proxy's upstream": [t for t in self._upstream if not t.closed],
            "origin's": self._origin_listener.open_ends(accepted=True),
        }
        return [
            f"{len(open_)} {where} connection end(s) not closed"
            for where, open_ in ends.items()
            if open_
        ]

    async def _settle(self, within_s: float) -> list[str]:
        """Until nothing is left, or ``within_s`` passed: what is left. Each look comes when
        every task waits, then after a pause twice the last (a deadline of the proxy's, a
        linger or an idle timeout, fires in between; under the autojump clock a few dozen
        looks cover a day)."""
        pause_s = 0.01
        with trio.move_on_after(within_s):
            while True:
                await trio.testing.wait_all_tasks_blocked()
                if not self.leaks():
                    break
                await trio.sleep(pause_s)
                pause_s *= 2
        return self.leaks()


async def _fixed_lookup(host: str, port: int) -> list[SockAddr]:
    await trio.lowlevel.checkpoint()
    return [(socket.AF_INET, ORIGIN_ADDRESS)]


async def _connect(
    network: MemoryNetwork, opened: list[MemoryTransport], family: int, sockaddr: object
) -> Transport:
    transport = await network.connect(family, sockaddr)
    assert isinstance(transport, MemoryTransport)
    opened.append(transport)
    return transport


async def _serve_origin(
    listener: MemoryListener, handler: StreamHandler, nursery: trio.Nursery
) -> None:
    while True:
        try:
            transport = await listener.accept()
        except trio.ClosedResourceError:
            return
        assert isinstance(transport, MemoryTransport)
        nursery.start_soon(_origin_connection, handler, MemoryStream(transport))


async def _origin_connection(handler: StreamHandler, stream: MemoryStream) -> None:
    async with stream:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await handler(stream)


def _asgi_handler(app: ASGIApp) -> StreamHandler:
    ports = iter(range(40000, 1 << 30))  # one client port per upstream connection, as TCP

    async def handler(stream: MemoryStream) -> None:
        client = ("127.0.0.1", next(ports))
        await serve_asgi(app, stream, client=client, server=ORIGIN_ADDRESS)

    return handler


@asynccontextmanager
async def memory_world(
    app: ASGIApp | None = None,
    *,
    origin: StreamHandler | None = None,
    settings: Settings | None = None,
    seed: int | None = 0,
    autojump: bool = True,
    journal_size: int = JOURNAL_SIZE,
    journal_body_bytes: int | None = None,
    check_leaks: bool = True,
) -> AsyncIterator[MemoryWorld]:
    """The real proxy in front of ``app`` (an ASGI app; default: a JSON echo) or ``origin``
    (an ``async def handler(stream)`` for each connection, for origins that misbehave at the
    byte level), all on a memory network, for the block.

    ``autojump``: time jumps whenever every task waits (trio must run on a `MockClock`:
    pytest-trio's ``autojump_clock`` fixture, or `trioproxy.testing.run`). ``seed``: the
    scheduler's seed (None: unseeded). ``journal_size``: exchanges ``world.journal`` keeps;
    ``journal_body_bytes``: request body bytes each keeps (default: the settings', none).
    ``check_leaks``: raise `LeakError` when the block leaves something behind.
    """
    if app is not None and origin is not None:
        raise TypeError("memory_world takes an ASGI app or an origin stream handler, not both")
    handler = origin or _asgi_handler(app or echo_app)
    if seed is not None:
        seed_scheduler(seed)
    settings = settings or Settings()
    network = MemoryNetwork()
    upstream: list[MemoryTransport] = []
    lines: list[dict[str, str]] = []
    server = ProxyServer(
        settings,
        UPSTREAM,
        _capture(settings, lines),
        lookup=_fixed_lookup,
        connect=partial(_connect, network, upstream),
        journal_size=journal_size,
        journal_body_bytes=journal_body_bytes,
    )
    if seed is not None:  # request IDs from the seed too: the same seed, the same journal
        ids = random.Random(seed)
        server.ctx = replace(server.ctx, new_request_id=lambda: b"%032x" % ids.getrandbits(128))
    proxy_listener = network.listen(PROXY_ADDRESS)
    origin_listener = network.listen(ORIGIN_ADDRESS)
    proxy = RunningProxy(server, *PROXY_ADDRESS, lines)
    world = MemoryWorld(proxy, network, seed, proxy_listener, origin_listener, upstream)
    left: list[str] = []
    finished = False
    with virtual_time() if autojump else contextlib.nullcontext():
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_serve_origin, origin_listener, handler, nursery)
                await nursery.start(server.run, [proxy_listener])
                try:
                    yield world
                    finished = True
                finally:
                    if finished and check_leaks:
                        left = await world._settle(SETTLE_S if autojump else SETTLE_REAL_S)
                    nursery.cancel_scope.cancel()
                    origin_listener.close()
        except BaseExceptionGroup as group:
            raise _sole(group) from None
        if finished and check_leaks:
            left += world._closed_leaks()
        if left:
            raise LeakError("left behind by the memory world's block:\n  " + "\n  ".join(left))


def _sole(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The block's own exception, out of the nursery's group when it is the only one (the
    test's AssertionError reads as itself); else the group."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        exc = pending.pop()
        if isinstance(exc, BaseExceptionGroup):
            pending.extend(exc.exceptions)
        else:
            leaves.append(exc)
    return leaves[0] if len(leaves) == 1 else group
