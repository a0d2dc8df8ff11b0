"""Engine test kit without sockets: the proxy, its clients and its origin on a `MemoryNetwork`.

The proxy is the real `ProxyServer`; only its transports are memory ones (the pool connects
through the network, the resolver answers a fixed address). Clients and origins see each
connection as a trio stream (`MemoryStream`), so `support.Client` and the raw-origin handlers
of the socket tests work unchanged. With ``autojump_clock`` timeouts of minutes take no time,
and with the scheduler seeded (`same_schedule`, done by `memory_proxy`) a run is the same
every time.

One handle: ``async with memory_proxy(settings, origin=handler, seed=0) as proxy`` starts the
origin and the proxy; ``proxy.client()`` / ``proxy.open()`` / ``proxy.exchange_raw()`` are its
clients (`support.running_proxy` is the same handle over loopback sockets);
``scripted_proxy(section__key=value, ...)`` is the usual case, that handle in front of a fresh
`ScriptedOrigin`. The addresses, the resolver's lookup, the counting connect and the accept
loop (`serve_memory`, also the simulation's in fuzz/) are the public memory world's
(``trioproxy.testing``); this handle adds what the engine tests look at.

What a test checks with: `MemoryProxy.upstream` (every upstream connection opened, so the
pool's counts can be compared with what is open), `check_no_leak`, `handler_tasks`,
`logged` (records waited for without polling), `settled`/`stopped`; `ScriptedOrigin` (an h11
origin answering by path, counting what it saw); `StepCounter` (an instrument that counts
scheduler steps and can act at the N-th: where the cancellation sweeps reset or cancel).
"""

from __future__ import annotations

import contextlib
import types
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import h11
import trio
import trio.testing

from trioproxy.config._settings import Settings
from trioproxy.core._accesslog import AccessRecord
from trioproxy.engine._memory import MemoryNetwork, MemoryTransport
from trioproxy.engine._server import ProxyServer
from trioproxy.testing import MemoryStream, seed_scheduler
from trioproxy.testing._world import (
    ORIGIN_ADDRESS,
    PROXY_ADDRESS,
    StreamHandler,
    counting_connect,
    fixed_lookup,
    serve_memory,
    serve_streams,
)

from .support import Client, make_settings, read_until_closed

# The kit's names (MemoryNetwork too, for tests that build a network of their own).
__all__ = [
    "ORIGIN_ADDRESS",
    "PROXY_ADDRESS",
    "UPSTREAM",
    "AccessLog",
    "MemoryNetwork",
    "MemoryProxy",
    "MemoryStream",
    "ScriptedOrigin",
    "StepCounter",
    "StreamHandler",
    "all_tasks",
    "counting_steps",
    "fixed_lookup",
    "handler_tasks",
    "in_flight",
    "memory_origin",
    "memory_proxy",
    "same_schedule",
    "scripted_proxy",
    "sent_by_hand",
    "serve_memory",
    "wait_until",
]

UPSTREAM = ("next-hop", 80)


class AccessLog:
    """The access-log sink: records kept, and waited for without polling."""

    def __init__(self) -> None:
        self.records: list[AccessRecord] = []
        self._written = trio.lowlevel.ParkingLot()

    def __call__(self, record: AccessRecord) -> None:
        self.records.append(record)
        self._written.unpark_all()

    async def wait_for(self, count: int) -> None:
        while len(self.records) < count:
            await self._written.park()


@dataclass
class MemoryProxy:
    server: ProxyServer
    network: MemoryNetwork
    log: AccessLog = field(default_factory=AccessLog)
    # Every upstream connection the proxy opened, its end (counted here, not in the network).
    upstream: list[MemoryTransport] = field(default_factory=list)

    @property
    def records(self) -> list[AccessRecord]:
        return self.log.records

    async def logged(self, count: int = 1) -> None:
        """Until ``count`` access records have been written (woken by the log itself, so no
        virtual time passes unobserved)."""
        await self.log.wait_for(count)

    @property
    def upstream_open(self) -> int:
        """Upstream connections the proxy has not closed yet."""
        return sum(not transport.closed for transport in self.upstream)

    async def settled(self) -> None:
        """Until every client connection has been accepted and served to its end."""
        await wait_until(
            lambda: handler_tasks() == 0 and not self.server.ctx.stats.connections_open
        )

    async def stopped(self) -> None:
        """Until the server's ``run`` has returned (after ``shutdown()``: drained)."""
        await wait_until(lambda: not any(t.name.endswith("ProxyServer.run") for t in all_tasks()))

    def check_no_leak(self) -> None:
        """Nothing outlives its exchange: the pool counts exactly the upstream connections
        still open (the idle ones), none is busy, and no client connection is being served."""
        pool = self.server.pool
        assert pool.open_count == self.upstream_open == pool.idle_count, (
            f"{pool!r}, {self.upstream_open} upstream connections open"
        )
        assert self.server.ctx.stats.connections_open == 0
        assert handler_tasks() == 0

    def open(self, client_ip: str = "198.51.100.7") -> MemoryStream:
        """A new client connection (it waits in the proxy's backlog until accepted)."""
        return MemoryStream(self.network.open(PROXY_ADDRESS, client_ip))

    @asynccontextmanager
    async def client(self, client_ip: str = "198.51.100.7") -> AsyncIterator[Client]:
        stream = self.open(client_ip)
        async with stream:
            yield Client(stream)

    async def requests_until(self, done: trio.Event, target: bytes = b"/small") -> int:
        """Requests for ``target`` (each answered 200), one after another on a connection of
        their own, until ``done``: how many were answered - another client served meanwhile."""
        served = 0
        async with self.client() as client:
            while not done.is_set():
                assert (await client.request(b"GET", target)).status == 200
                served += 1
        return served

    async def exchange_raw(self, data: bytes, client_ip: str = "198.51.100.7") -> bytes:
        """Send raw bytes on a new connection and collect everything until the proxy closes."""
        async with self.open(client_ip) as stream:
            await stream.send_all(data)
            return await read_until_closed(stream)


@asynccontextmanager
async def memory_origin(
    network: MemoryNetwork, handler: StreamHandler, address: tuple[str, int] = ORIGIN_ADDRESS
) -> AsyncIterator[None]:
    """Serve ``handler`` per connection at ``address`` until the block ends."""
    listener = network.listen(address)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_streams, listener, handler)
        try:
            yield
        finally:
            nursery.cancel_scope.cancel()
            listener.close()


def handler_tasks() -> int:
    """How many connection handler tasks (``ProxyServer._handle``) are alive."""
    return sum(task.name.endswith("ProxyServer._handle") for task in all_tasks())


def all_tasks() -> list[trio.lowlevel.Task]:
    found: list[trio.lowlevel.Task] = []
    pending = [trio.lowlevel.current_root_task()]
    while pending:
        task = pending.pop()
        if task is None:
            continue
        found.append(task)
        pending.extend(child for n in task.child_nurseries for child in n.child_tasks)
    return found


def awaiting(task: trio.lowlevel.Task) -> list[str]:
    """The names of the coroutines a task is suspended in, outermost first (none on the
    compiled build, whose coroutines have no frames: tests reading them skip there)."""
    names: list[str] = []
    coro: object = task.coro
    while isinstance(coro, types.CoroutineType):
        names.append(coro.cr_code.co_name)
        coro = coro.cr_await
    return names


def same_schedule(seed: int = 0) -> None:
    """Seed trio's scheduler, which runs each batch of ready tasks in a random order (to shake
    out ordering assumptions): seeded, a run on the autojump clock is the same every time.
    The public kit's seeding, which knows the trio versions it can seed and refuses others."""
    seed_scheduler(seed)


@asynccontextmanager
async def memory_proxy(
    settings: Settings | None = None,
    network: MemoryNetwork | None = None,
    *,
    origin: StreamHandler | None = None,
    seed: int = 0,
    within_s: float = 3600.0,
    hooks: Mapping[str, object] | None = None,
) -> AsyncIterator[MemoryProxy]:
    """The real server on a memory network, access records captured, and ``origin`` (if
    given) serving each upstream connection; the scheduler seeded with ``seed``, so the run
    is the same every time. The block must end within ``within_s`` of virtual time
    (TooSlowError), so no test can hang: the pool's reaper always has a next deadline for the
    autojump clock to jump to. ``hooks``: hook objects by name (`trioproxy.hooks`), as an
    embedding program gives them."""
    same_schedule(seed)
    network = network or MemoryNetwork()
    if origin is not None:
        async with memory_origin(network, origin):
            async with memory_proxy(
                settings, network, seed=seed, within_s=within_s, hooks=hooks
            ) as proxy:
                yield proxy
        return
    upstream: list[MemoryTransport] = []
    log = AccessLog()
    server = ProxyServer(
        settings or Settings(),
        UPSTREAM,
        log,
        lookup=fixed_lookup,
        connect=partial(counting_connect, network, upstream),
        hooks=hooks,
    )
    proxy = MemoryProxy(server, network, log, upstream)
    listener = network.listen(PROXY_ADDRESS)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run, [listener])
        try:
            with trio.fail_after(within_s):
                yield proxy
        finally:
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def scripted_proxy(
    settings: Settings | None = None, *, network: MemoryNetwork | None = None, **overrides: Any
) -> AsyncIterator[tuple[MemoryProxy, ScriptedOrigin]]:
    """The engine tests' usual world: `memory_proxy` in front of a fresh `ScriptedOrigin`,
    with ``settings``, or settings from ``overrides`` (``section__key=value``, as
    `support.make_settings`); on ``network`` if given (one with small pipes, say)."""
    assert settings is None or not overrides, "settings, or overrides: not both"
    origin = ScriptedOrigin()
    settings = settings or make_settings(**overrides)
    async with memory_proxy(settings, network, origin=origin) as proxy:
        yield proxy, origin


async def in_flight(client: Client, origin: ScriptedOrigin, target: bytes) -> None:
    """Send ``GET target`` on ``client`` and wait until ``origin`` has it: an exchange that
    holds its connections (``/slow/S``: for S seconds) until ``client.read_reply()``."""
    await client.stream.send_all(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % target)
    await wait_until(lambda: target in origin.targets)


async def wait_until(condition: Callable[[], object]) -> None:
    """Until ``condition()`` holds: checked whenever every task is blocked, and, when time
    must pass for it (a deadline), after each jump of the autojump clock."""
    while not condition():
        await trio.testing.wait_all_tasks_blocked()
        if not condition():
            await trio.sleep(0.01)  # virtual: lets the next deadline fire


@dataclass
class ScriptedOrigin:
    """An HTTP/1.1 origin (h11) answering by path, with what it saw and did counted; on any
    trio stream (a memory one here, a loopback socket in ``e2e/test_abuse``).

    ``/small``: "ok"; ``/big/N``: N bytes, written 64 KiB at a time (``sent`` counts them
    all, so a test sees where its writes block); ``/chunks/N``: N one-byte chunks, 1000 per write;
    ``/slow/S``: "ok" after S seconds; ``/drip/N``: N pieces of 1000 bytes, slowly;
    ``/close``: "ok" then the connection closes; ``/ws``: a 101, then raw bytes echoed in
    upper case; any request with a body: the body's length.
    """

    accepted: int = 0
    open: int = 0
    targets: list[bytes] = field(default_factory=list)
    heads: list[h11.Request] = field(default_factory=list)
    sent: int = 0
    answered: int = 0

    async def __call__(self, stream: trio.abc.HalfCloseableStream) -> None:
        self.accepted += 1
        self.open += 1
        try:
            with contextlib.suppress(
                trio.BrokenResourceError, trio.ClosedResourceError, h11.RemoteProtocolError
            ):  # the proxy went away, or the test reset this end
                await self._serve(stream)
        finally:
            self.open -= 1

    async def _serve(self, stream: trio.abc.HalfCloseableStream) -> None:
        conn = h11.Connection(h11.SERVER)
        while True:
            received = 0
            request: h11.Request | None = None
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(65536)
                    conn.receive_data(bytes(data))
                    if not data and request is None:
                        return
                elif isinstance(event, h11.Request):
                    request = event
                    self.heads.append(event)
                    self.targets.append(event.target)
                elif isinstance(event, h11.Data):
                    received += len(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    break
                else:
                    return
            assert request is not None
            if request.target == b"/ws":
                await self._tunnel(stream, conn)
                return
            if request.method == b"HEAD":  # the head a GET would get, no body
                response = h11.Response(status_code=200, headers=[(b"Content-Length", b"2")])
                await stream.send_all(conn.send(response) + conn.send(h11.EndOfMessage()))
            else:
                await self._answer(stream, conn, request.target.decode(), received)
            self.answered += 1
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            if request.target == b"/close":
                return
            conn.start_next_cycle()

    async def _tunnel(self, stream: trio.abc.HalfCloseableStream, conn: h11.Connection) -> None:
        """Accept the upgrade, then echo raw bytes upper-cased until the proxy's EOF."""
        switch = h11.InformationalResponse(
            status_code=101, headers=[(b"Upgrade", b"websocket"), (b"Connection", b"Upgrade")]
        )
        await stream.send_all(conn.send(switch))
        data = conn.trailing_data[0]
        while True:
            if data:
                await stream.send_all(data.upper())
            data = bytes(await stream.receive_some(65536))
            if not data:
                await stream.send_eof()
                return

    async def _answer(
        self, stream: trio.abc.HalfCloseableStream, conn: h11.Connection, path: str, got: int
    ) -> None:
        if path.startswith("/chunks/"):
            await stream.send_all(conn.send(h11.Response(status_code=200, headers=[])))
            for _ in range(0, int(path.split("/")[2]), 1000):
                await stream.send_all(b"".join(conn.send(h11.Data(data=b"x")) for _ in range(1000)))
            await stream.send_all(conn.send(h11.EndOfMessage()))
            return
        if path.startswith("/big/"):
            size = int(path.split("/")[2])
            headers = [(b"Content-Length", b"%d" % size)]
            await stream.send_all(conn.send(h11.Response(status_code=200, headers=headers)))
            piece = b"b" * 65536
            for start in range(0, size, len(piece)):
                part = piece[: size - start]
                await stream.send_all(conn.send(h11.Data(data=part)))
                self.sent += len(part)
            await stream.send_all(conn.send(h11.EndOfMessage()))
            return
        if path.startswith("/drip/"):
            # The head after 1.5 s (past the client watch's start), then N pieces of 1000
            # bytes, one every 0.5 s.
            await trio.sleep(1.5)
            await stream.send_all(conn.send(h11.Response(status_code=200, headers=[])))
            for _ in range(int(path.split("/")[2])):
                await trio.sleep(0.5)
                await stream.send_all(conn.send(h11.Data(data=b"d" * 1000)))
            await stream.send_all(conn.send(h11.EndOfMessage()))
            return
        if path.startswith("/slow/"):
            await trio.sleep(float(path.split("/")[2]))
        body = b"%d" % got if got else b"ok"
        headers = [(b"Content-Length", b"%d" % len(body))]
        out = conn.send(h11.Response(status_code=200, headers=headers))
        await stream.send_all(out + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))


class StepCounter(trio.abc.Instrument):
    """Counts each task's steps (runs between two yields); calls ``at_step`` (if given) as
    the ``at``-th step of any task begins: where a test cancels or resets something."""

    def __init__(self, at: int = 0, at_step: Callable[[], object] | None = None) -> None:
        self.steps: Counter[trio.lowlevel.Task] = Counter()
        self.total = 0
        self.at = at
        self.at_step = at_step

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps[task] += 1
        self.total += 1
        if self.total == self.at and self.at_step is not None:
            self.at_step()

    def busiest(self, name_end: str) -> int:
        return max((n for task, n in self.steps.items() if task.name.endswith(name_end)), default=0)


@contextlib.contextmanager
def counting_steps(
    at: int = 0, at_step: Callable[[], object] | None = None
) -> Iterator[StepCounter]:
    counter = StepCounter(at, at_step)
    trio.lowlevel.add_instrument(counter)
    try:
        yield counter
    finally:
        trio.lowlevel.remove_instrument(counter)


def sent_by_hand(
    client: Client, method: bytes, target: bytes, length: int = 0, *, chunked: bool = False
) -> None:
    """Tell the test client's h11 about a request the test wrote itself on the stream, so
    that it reads the reply."""
    headers = [(b"Host", b"x")]
    if length:
        headers.append((b"Content-Length", b"%d" % length))
    if chunked:
        headers.append((b"Transfer-Encoding", b"chunked"))
    client.conn.send(h11.Request(method=method, target=target, headers=headers))
    if not (length or chunked):  # bodyless: whole, so the client can go on after the reply
        client.conn.send(h11.EndOfMessage())
