"""Test kit: a proxy in the test's nursery, real origins on loopback, and a small h11 client.

Rules (as trio-websocket's tests state theirs): loopback only, port 0 only, and every test
runs under a ``trio.fail_after`` cap, so a regression fails instead of hanging.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import h11
import trio

from trioproxy import running
from trioproxy.config._settings import Settings
from trioproxy.core._accesslog import AccessRecord
from trioproxy.engine._busypoll import BusyPoll, busy_poll
from trioproxy.engine._server import ProxyServer

Headers = list[tuple[bytes, bytes]]


def fields(block: str) -> Headers:
    """Header fields written as on the wire, one "Name: value" a line (indentation ignored)."""
    pairs = (line.strip().split(": ", 1) for line in block.strip().splitlines())
    return [(name.encode(), value.encode()) for name, value in pairs]


def make_settings(**overrides: Any) -> Settings:
    """Settings with ``section__key=value`` overrides, e.g. ``timeouts__client_idle_s=1``."""
    settings = Settings()
    for dotted, value in overrides.items():
        section_name, key = dotted.split("__", 1)
        section = getattr(settings, section_name)
        settings = dataclasses.replace(
            settings, **{section_name: dataclasses.replace(section, **{key: value})}
        )
    return settings


def access_record(
    host: bytes = b"h.example",
    status: int = 200,
    sent: int = 100,
    duration_s: float = 0.001,
    upstream_s: float = -1.0,
    peer: str = "127.0.0.1",
) -> AccessRecord:
    """An exchange's access record with what the request metrics count."""
    return AccessRecord(
        start_wall=0.0,
        peer=peer,
        host=host,
        status=status,
        bytes_sent=sent,
        duration_s=duration_s,
        upstream_duration_s=upstream_s,
    )


RawHandler = Callable[[trio.SocketStream], Awaitable[None]]


@dataclass
class RunningProxy:
    """The socket twin of `memnet.MemoryProxy`: the server, its address, what it logged."""

    server: ProxyServer
    port: int
    records: list[AccessRecord] = field(default_factory=list)

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def client(self) -> AbstractAsyncContextManager[Client]:
        """A new client connection to the proxy."""
        return Client.connect(self.address)


@asynccontextmanager
async def running_proxy(
    upstream: tuple[str, int] | RawHandler, settings: Settings | None = None
) -> AsyncIterator[RunningProxy]:
    """The real server on 127.0.0.1:0 inside the test's nursery (through the public
    `trioproxy.running`); access records captured. ``upstream`` is an address, or a handler
    to serve on loopback as the origin (`raw_origin`) for as long as the proxy runs."""
    if callable(upstream):
        async with raw_origin(upstream) as address, running_proxy(address, settings) as proxy:
            yield proxy
        return
    records: list[AccessRecord] = []
    async with running(upstream, settings, access_log=records.append) as proxy:
        yield RunningProxy(proxy.server, proxy.port, records)


def split_url(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


@asynccontextmanager
async def raw_origin(handler: RawHandler) -> AsyncIterator[tuple[str, int]]:
    """A TCP server on loopback running ``handler`` per connection: for origins that
    misbehave in ways a real server framework would not let us write."""
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        try:
            yield ("127.0.0.1", listeners[0].socket.getsockname()[1])
        finally:
            nursery.cancel_scope.cancel()


def answering(data: bytes, *, hold: bool = False) -> Callable[[trio.abc.Stream], Awaitable[None]]:
    """A raw origin that reads a request head, sends ``data`` as it is, and closes; with
    ``hold``, it keeps the connection open instead, reading no more (closing is the proxy's)."""

    async def answer(stream: trio.abc.Stream) -> None:
        await read_head(stream)
        await stream.send_all(data)
        if hold:
            await trio.sleep_forever()

    return answer


def answering_every(data: bytes) -> Callable[[trio.abc.Stream], Awaitable[None]]:
    """A raw keep-alive origin: ``data`` for each request head, until the peer closes (heads
    that came in one read each get theirs; request bodies are not read)."""

    async def answer(stream: trio.abc.Stream) -> None:
        received = b""
        while True:
            while b"\r\n\r\n" not in received:
                more = await stream.receive_some(65536)
                if not more:
                    return
                received += more
            _, _, received = received.partition(b"\r\n\r\n")
            await stream.send_all(data)

    return answer


async def unused_address() -> tuple[str, int]:
    """A loopback address nobody listens on (a port bound, then let go)."""
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        address: tuple[str, int] = sock.getsockname()
        return address


async def read_until_closed(stream: trio.abc.ReceiveStream) -> bytes:
    """Everything the peer sends until it closes."""
    received = bytearray()
    while chunk := await stream.receive_some(65536):
        received += chunk
    return bytes(received)


async def read_head(stream: trio.abc.ReceiveStream) -> bytes:
    """What a raw origin reads of a request: bytes up to the end of the head (b"" at EOF)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return data
        data += chunk
    return data


@dataclass
class HeldOrigin:
    """A raw origin (on any trio stream: a socket, or a memory one) that holds each answer
    until ``release`` is set; ``arrived`` is set as the first request head has come. With
    ``early``, the head and that many bytes of the body go out before the hold."""

    body: bytes = b"ok"
    heads: list[bytes] = field(default_factory=list)
    arrived: trio.Event = field(default_factory=trio.Event)
    release: trio.Event = field(default_factory=trio.Event)
    early: int | None = None

    async def __call__(self, stream: trio.abc.Stream) -> None:
        while head := await read_head(stream):
            self.heads.append(head)
            self.arrived.set()
            framing = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(self.body)
            if self.early is not None:
                await stream.send_all(framing + self.body[: self.early])
            await self.release.wait()
            if self.early is None:
                await stream.send_all(framing + self.body)
            else:
                await stream.send_all(self.body[self.early :])


@dataclass
class Reply:
    """A response as a client saw it (the tests' one reply type, the simulation's too)."""

    status: int
    headers: Headers
    body: bytes = b""
    informational: list[h11.InformationalResponse] = field(default_factory=list)
    http_version: bytes = b"1.1"
    trailers: Headers = field(default_factory=list)

    def header(self, name: bytes) -> bytes | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return b", ".join(values) if values else None

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """An HTTP/1.1 client connection, one exchange at a time (h11, CLIENT role)."""

    def __init__(self, stream: trio.abc.HalfCloseableStream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)

    @classmethod
    @asynccontextmanager
    async def connect(cls, address: tuple[str, int]) -> AsyncIterator[Client]:
        stream = await trio.open_tcp_stream(*address)
        async with stream:
            yield cls(stream)

    async def request(
        self,
        method: bytes,
        target: bytes = b"/",
        headers: Headers | None = None,
        body: bytes | list[bytes] = b"",
    ) -> Reply:
        headers = list(headers or [])
        if not any(k.lower() == b"host" for k, _ in headers):
            headers.insert(0, (b"Host", b"test.example"))
        chunks = [body] if isinstance(body, bytes) else body
        if isinstance(body, bytes) and body:
            headers.append((b"Content-Length", b"%d" % len(body)))
        elif isinstance(body, list):
            headers.append((b"Transfer-Encoding", b"chunked"))
        out = [self.conn.send(h11.Request(method=method, target=target, headers=headers))]
        out += [self.conn.send(h11.Data(data=chunk)) for chunk in chunks if chunk]
        out.append(self.conn.send(h11.EndOfMessage()))
        await self.stream.send_all(b"".join(x for x in out if x))
        return await self.read_reply()

    def request_soon(
        self, nursery: trio.Nursery, method: bytes, target: bytes = b"/"
    ) -> list[Reply]:
        """Start the request in ``nursery``; the list returned holds its reply once it came."""
        replies: list[Reply] = []

        async def run() -> None:
            replies.append(await self.request(method, target))

        nursery.start_soon(run)
        return replies

    async def read_reply(self) -> Reply:
        info: list[h11.InformationalResponse] = []
        response: h11.Response | None = None
        body = bytearray()
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(bytes(await self.stream.receive_some(65536)))
            elif isinstance(event, h11.InformationalResponse):
                info.append(event)
            elif isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                raise AssertionError(f"unexpected {event!r}")
        assert response is not None
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
        return Reply(
            response.status_code,
            list(response.headers.raw_items()),
            bytes(body),
            info,
            response.http_version,
        )


async def exchange_raw(
    address: tuple[str, int], data: bytes, *, read_until_close: bool = True
) -> bytes:
    """Send raw bytes and collect everything until the peer closes."""
    stream = await trio.open_tcp_stream(*address)
    async with stream:
        await stream.send_all(data)
        if not read_until_close:
            return bytes(await stream.receive_some(65536))
        return await read_until_closed(stream)


def parse_responses(
    data: bytes, *, method: bytes = b"GET", eof: bool = True, limit: int = 1000
) -> list[Reply]:
    """The complete responses at the start of ``data``, parsed with h11 as answers to
    ``method`` requests. With ``eof`` the bytes are a whole connection's worth, up to its
    close (a response cut short by it raises h11.RemoteProtocolError); without, parsing stops
    quietly at an incomplete response. Raises if the bytes are not valid HTTP/1.1."""
    conn = h11.Connection(h11.CLIENT)
    if data:  # b"" would mean EOF to h11
        conn.receive_data(data)
    if eof:
        conn.receive_data(b"")
    replies: list[Reply] = []
    for _ in range(limit):
        conn.send(h11.Request(method=method, target=b"/", headers=[(b"Host", b"x")]))
        conn.send(h11.EndOfMessage())
        reply: Reply | None = None
        while True:
            event = conn.next_event()
            if isinstance(event, h11.Response):
                reply = Reply(event.status_code, list(event.headers.raw_items()))
            elif isinstance(event, h11.Data) and reply is not None:
                reply.body += event.data
            elif isinstance(event, h11.EndOfMessage) and reply is not None:
                reply.trailers = list(event.headers.raw_items())
                replies.append(reply)
                break
            elif not isinstance(event, h11.InformationalResponse):
                return replies  # NEED_DATA or ConnectionClosed: no more responses
        if not (conn.our_state is h11.DONE and conn.their_state is h11.DONE):
            return replies
        conn.start_next_cycle()
    return replies


@asynccontextmanager
async def echo_origin() -> AsyncIterator[tuple[str, int]]:
    from trioproxy.app._origin import echo_app, origin

    async with origin(echo_app) as url:
        yield split_url(url)


def count_spins(monkeypatch: Any) -> list[bool]:
    """Every task's busy poll (`BusyPoll.spin`) from now on, as what each found: True when
    its socket was readable first. (``monkeypatch``: pytest's fixture, which undoes it.)"""
    spins: list[bool] = []
    spin = BusyPoll.spin

    def counted(self: BusyPoll, fd: int) -> bool:
        spins.append(found := spin(self, fd))
        return found

    monkeypatch.setattr(BusyPoll, "spin", counted)
    return spins


def spinning_busy_poll(window_s: float) -> BusyPoll:
    """Busy polling installed in the current trio run with a window (and limit) of
    ``window_s``, which no configuration allows beyond 1 ms: an attack's window, which only
    the poll's own bounds can end."""
    busy = busy_poll(None, 50)
    assert busy is not None
    busy.limit_s = busy.window_s = window_s
    return busy
