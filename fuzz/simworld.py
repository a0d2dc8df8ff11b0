"""The simulated world's parts: scenarios as plain data, and the scripted clients and origin.

A scenario says everything a run does: per client when it starts, the requests it sends and
how (pipelined, in slow pieces, with Expect, half-closed, reset, given up), per request how
the origin answers it (normal, closing, dropping the connection later, early, 100/103,
silent, slow, cut, reset, 101 and echo, overrunning its framing), and when the proxy is
stopped. Every byte a client or the origin sends carries the token of the request it belongs
to (``t003.1``: client 3, request 1), so whoever receives it can tell whose it is.

Clients and the origin use the memory transports directly (`send`, `recv`), never trio's
streams: they must know exactly how many bytes went out before a reset or a close.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import h11
import trio
from trio.lowlevel import checkpoint

from tests.memnet import serve_memory
from tests.support import Reply
from trioproxy.engine._memory import MemoryListener, MemoryTransport

# Whose bytes these are: every token starts with "t", three digits (the client) and a dot.
TOKEN_OWNER = re.compile(rb"t(\d{3})\.")

CLIENT_ENDINGS = ("read", "half_close", "leave_early", "reset", "silent", "garbage")
ORIGIN_BEHAVIOURS = (
    *("ok", "close", "drop", "early", "interim", "silent", "slow", "cut", "reset", "upgrade"),
    "overrun",
)
# "drop": answers keep-alive, closes a moment later (a reused connection found stale).
# "overrun": answers keep-alive with a second, unasked-for response of this request's token
# right behind the first, in the same write: a proxy that reused the connection would give
# it to the next request, maybe another client's.


@dataclass(frozen=True)
class RequestSpec:
    body: str  # "none" (a GET), "head" (a HEAD), "length" or "chunked" (a POST)
    body_size: int
    upgrade: bool  # a WebSocket upgrade (only ever a client's last request)
    origin: str  # one of ORIGIN_BEHAVIOURS
    response_size: int
    expect: bool = False  # Expect: 100-continue (with a body): the body waits for a 100


@dataclass(frozen=True)
class ClientSpec:
    start_s: float
    requests: tuple[RequestSpec, ...]
    pipelined: bool
    piece_bytes: int  # 0: each request in one write; else pieces this long, paused between
    pause_s: float
    ending: str  # one of CLIENT_ENDINGS
    cut_fraction: float  # "reset": how much of its bytes go out before the reset
    give_up_s: float | None  # after start: the client's scope is cancelled, its end closed


@dataclass(frozen=True)
class Scenario:
    seed: int  # trio's scheduler order (and nothing else)
    clients: tuple[ClientSpec, ...]
    stop: str  # "after" (clients done), "drain" or "cancel" at stop_s or at stop_step
    stop_s: float
    stop_step: int  # 0: none; else after this many task steps (any checkpoint)
    drain_s: float
    max_connections: int  # downstream
    upstream_max_connections: int
    pool_size: int
    keepalive_requests: int
    # "none", or hooks on every request ("hooks"): awaiting at the request, the response head
    # and the access line, editing a response header, and one that times out on "/"-less paths.
    hooks: str = "none"


def token(client: int, request: int) -> bytes:
    return b"t%03d.%d" % (client, request)


def owners(data: bytes | bytearray) -> set[int]:
    return {int(match) for match in TOKEN_OWNER.findall(data)}


def payload(tok: bytes, size: int) -> bytes:
    unit = tok + b" "
    return (unit * (size // len(unit) + 1))[:size]


def method_of(spec: RequestSpec) -> bytes:
    return {"none": b"GET", "head": b"HEAD"}.get(spec.body, b"POST")


def request_bytes(tok: bytes, spec: RequestSpec) -> tuple[bytes, int]:
    """One request's bytes, and where its head ends."""
    method = method_of(spec)
    head = b"%s /%s HTTP/1.1\r\nHost: sim.test\r\nX-Request-ID: %s\r\n" % (method, tok, tok)
    if spec.upgrade:
        head += b"Connection: Upgrade\r\nUpgrade: websocket\r\n"
    if spec.expect and spec.body != "none":
        head += b"Expect: 100-continue\r\n"
    body = payload(tok, spec.body_size)
    if spec.body == "length":
        head += b"Content-Length: %d\r\n" % len(body)
    elif spec.body == "chunked":
        head += b"Transfer-Encoding: chunked\r\n"
        chunks = [body[at : at + 700] for at in range(0, len(body), 700)]
        body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    else:
        body = b""
    head += b"\r\n"
    return head + body, len(head)


# --- Bytes over memory transports ------------------------------------------------------------


async def send(transport: MemoryTransport, data: bytes, sent: list[int] | None = None) -> None:
    """Write all of ``data`` (OSError if the peer went away); ``sent[0]`` counts what went."""
    view = memoryview(data)
    while view:
        taken = transport.write_nowait(view)
        if taken is None:
            await transport.wait_writable()
            continue
        view = view[taken:]
        if sent is not None:
            sent[0] += taken
    await checkpoint()


async def recv(transport: MemoryTransport) -> bytes:
    """The next bytes; b"" at EOF; OSError on a reset."""
    while True:
        data = transport.read_nowait(65536)
        if data is not None:
            await checkpoint()
            return data
        await transport.wait_readable()


# --- Reading responses as a strict client -----------------------------------------------------


class Replies:
    """Parses the bytes one client connection received, against the requests it sent:
    each final response in turn, 1xx skipped, the tunnel's bytes after a 101."""

    def __init__(self, requests: list[tuple[bytes, bool]]) -> None:
        self.requests = requests  # (method, upgrade) of each request, in order
        self.conn = h11.Connection(h11.CLIENT)
        self.done: list[Reply] = []
        self.tunnel = bytearray()
        self.switched = False
        self.continued: set[int] = set()  # the requests a 100 Continue came for
        self.error = ""  # what was wrong with the bytes (not valid HTTP, more than asked)
        self._current: Reply | None = None
        if requests:
            self._start()

    def _start(self) -> None:
        method, upgrade = self.requests[len(self.done)]
        headers = [(b"Host", b"sim.test")]
        if upgrade:
            headers += [(b"Connection", b"Upgrade"), (b"Upgrade", b"websocket")]
        self.conn.send(h11.Request(method=method, target=b"/", headers=headers))
        self.conn.send(h11.EndOfMessage())

    def feed(self, data: bytes) -> None:
        if self.switched:
            self.tunnel += data
            return
        if self.error or (not data and self.conn.their_state is h11.CLOSED):
            return
        if len(self.done) == len(self.requests) or self.conn.their_state is h11.MUST_CLOSE:
            if data:
                self.error = f"{len(data)} bytes after the last response: {data[:60]!r}"
            return
        try:
            self.conn.receive_data(data)
            self._parse()
        except h11.RemoteProtocolError as exc:
            if data:  # (at the close, a response cut short: the close is what the client sees)
                self.error = f"not valid HTTP: {exc}"

    def _parse(self) -> None:
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA or isinstance(event, h11.ConnectionClosed):
                return
            if isinstance(event, h11.InformationalResponse):
                if event.status_code == 100:
                    self.continued.add(len(self.done))
                if event.status_code == 101:
                    self.switched = True
                    self.done.append(Reply(101, list(event.headers.raw_items())))
                    self.tunnel += self.conn.trailing_data[0]
                    return
            elif isinstance(event, h11.Response):
                self._current = Reply(event.status_code, list(event.headers.raw_items()))
            elif isinstance(event, h11.Data):
                assert self._current is not None
                self._current.body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert self._current is not None
                self.done.append(self._current)
                self._current = None
                if self.conn.our_state is not h11.DONE or self.conn.their_state is not h11.DONE:
                    return
                if len(self.done) == len(self.requests):
                    if self.conn.trailing_data[0]:
                        self.error = f"bytes after the last response: {self.conn.trailing_data}"
                    return
                self.conn.start_next_cycle()
                self._start()


# --- The origin ---------------------------------------------------------------------------------


@dataclass
class OriginLog:
    """What the origin saw: the tokens of the requests it read, and any bytes in a request
    that belonged to another request (what the proxy must never do)."""

    seen: list[bytes] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)


async def serve_origin(
    listener: MemoryListener,
    behaviour: Callable[[bytes], tuple[str, int]],
    log: OriginLog,
    pause_s: float,
) -> None:
    """Accept and answer until cancelled; each connection is closed by its own task."""

    async def connection(transport: MemoryTransport) -> None:
        await _origin_connection(transport, behaviour, log, pause_s)

    await serve_memory(listener, connection)


async def _origin_connection(
    transport: MemoryTransport,
    behaviour: Callable[[bytes], tuple[str, int]],
    log: OriginLog,
    pause_s: float,
) -> None:
    try:
        await _answer_requests(transport, behaviour, log, pause_s)
    except (OSError, trio.ClosedResourceError, trio.BrokenResourceError):
        pass  # the proxy went away (closed or reset): so does this connection
    finally:
        transport.close()


async def _next_event(conn: h11.Connection, transport: MemoryTransport) -> object:
    """The next h11 event, reading as needed; None once the proxy closed."""
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        data = await recv(transport)
        if not data:
            return None
        conn.receive_data(data)


async def _answer_requests(
    transport: MemoryTransport,
    behaviour: Callable[[bytes], tuple[str, int]],
    log: OriginLog,
    pause_s: float,
) -> None:
    conn = h11.Connection(h11.SERVER)
    while True:
        try:
            event = await _next_event(conn, transport)
        except h11.RemoteProtocolError as exc:
            log.violations.append(f"the origin got invalid HTTP: {exc}")
            return
        if not isinstance(event, h11.Request):
            return
        tok = event.target[1:]
        what, size = behaviour(tok)
        log.seen.append(tok)
        seen = bytearray(event.target)
        for _, value in event.headers.raw_items():
            seen += b" " + value
        _check_owner(log, tok, seen)
        if what == "reset":
            transport.reset()
            return
        if what == "early":
            head = event.method == b"HEAD"
            await send(transport, _response(conn, tok, size, close=True, head=head))
            return
        if what == "silent":
            while await recv(transport):
                pass
            return
        if what == "interim" and conn.they_are_waiting_for_100_continue:
            go_on = h11.InformationalResponse(status_code=100, headers=[])
            await send(transport, conn.send(go_on) or b"")
        body = bytearray()
        complete = await _read_body(conn, transport, body)
        _check_owner(log, tok, body)
        if not complete:
            return
        if what == "upgrade" and conn.their_state is not h11.DONE:  # (might switch)
            await _switch_and_echo(conn, transport)
            return
        if what == "interim":
            hint = h11.InformationalResponse(status_code=103, headers=[(b"Link", b"</s.css>")])
            await send(transport, conn.send(hint) or b"")
        head = event.method == b"HEAD"
        data = _response(conn, tok, size, close=what == "close", head=head)
        if what == "overrun":  # a HEAD's body first: the classic overrun
            data += (payload(tok, size) if head else b"") + _unasked(tok, size)
        if what == "cut":
            await send(transport, data[: len(data) - size // 2 - 1])
            return
        if what == "slow":
            third = len(data) // 3
            for piece in (data[:third], data[third : 2 * third], data[2 * third :]):
                await send(transport, piece)
                await trio.sleep(pause_s)
        else:
            await send(transport, data)
        if what == "drop":  # keep-alive said, then closed a moment later: the stale race
            await trio.sleep(pause_s)
            return
        if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
            return
        conn.start_next_cycle()


def _check_owner(log: OriginLog, tok: bytes, seen: bytearray) -> None:
    if owners(seen) - {int(tok[1:4])}:
        log.violations.append(f"request {tok!r} at the origin carries {bytes(seen)[:200]!r}")


async def _read_body(conn: h11.Connection, transport: MemoryTransport, seen: bytearray) -> bool:
    """Read the request to its end; False if the proxy closed first."""
    while True:
        event = await _next_event(conn, transport)
        if not isinstance(event, h11.Data):
            return isinstance(event, h11.EndOfMessage)
        seen += event.data


def _response(
    conn: h11.Connection, tok: bytes, size: int, *, close: bool, head: bool = False
) -> bytes:
    body = b"" if head else payload(tok, size)  # (a HEAD's answer: the GET's head alone)
    headers = [(b"Content-Length", b"%d" % size), (b"X-Token", tok)]
    if close:
        headers.append((b"Connection", b"close"))
    start = conn.send(h11.Response(status_code=200, headers=headers)) or b""
    return start + (conn.send(h11.Data(data=body)) or b"") + (conn.send(h11.EndOfMessage()) or b"")


def _unasked(tok: bytes, size: int) -> bytes:
    """A whole response nobody asked for (h11 would not send it): bytes past the framing."""
    body = payload(tok, size)
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Token: %s\r\n\r\n" % (len(body), tok)
    return head + body


async def _switch_and_echo(conn: h11.Connection, transport: MemoryTransport) -> None:
    switch = h11.InformationalResponse(
        status_code=101, headers=[(b"Upgrade", b"websocket"), (b"Connection", b"Upgrade")]
    )
    await send(transport, conn.send(switch) or b"")
    pending = conn.trailing_data[0]
    if pending:
        await send(transport, pending)
    while data := await recv(transport):
        await send(transport, data)
    transport.shutdown_write()
