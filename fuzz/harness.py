"""One real proxy and one scriptable origin, run by trio in a background thread, for sync
hypothesis tests that talk to them over blocking loopback sockets.

Starting a proxy per example would dominate the cost; this one lives for a whole test
module. Everything the server logs at ERROR (an "internal error" is a traceback we did not
expect) is collected, so a property can assert that an example left none behind.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType

import h11
import trio

from tests.support import Reply, make_settings, parse_responses, raw_origin, running_proxy
from trioproxy.config._settings import Settings

# Short timeouts, so a stuck exchange shows up as a hang within HANG_S rather than a minute.
SETTINGS = make_settings(
    timeouts__client_header_s=2.0,
    timeouts__client_body_s=2.0,
    timeouts__client_send_s=2.0,
    timeouts__upstream_response_s=2.0,
    timeouts__upstream_read_s=2.0,
    timeouts__upstream_send_s=2.0,
    timeouts__upstream_connect_s=2.0,
)
HANG_S = 6.0  # beyond every timeout above: an exchange still open after this is a hang

Handler = Callable[[trio.SocketStream], Awaitable[None]]


class ErrorLines(logging.Handler):
    """The proxy's ERROR lines: an internal error is a traceback nobody expected."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


class Harness:
    """``with Harness(origin_handler) as h: h.exchange(...)``."""

    def __init__(self, origin: Handler, settings: Settings = SETTINGS) -> None:
        self._origin = origin
        self._settings = settings
        self._ready = threading.Event()
        self._failure: list[BaseException] = []
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="fuzz-proxy", daemon=True)
        self._log = ErrorLines()
        self.address: tuple[str, int] = ("127.0.0.1", 0)

    def __enter__(self) -> Harness:
        logging.getLogger("trioproxy").addHandler(self._log)
        self._thread.start()
        if not self._ready.wait(10) or self._failure:
            raise RuntimeError(f"proxy harness did not start: {self._failure!r}")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._token is not None and self._stop is not None:
                self._token.run_sync_soon(self._stop.set)
            self._thread.join(10)
            assert not self._thread.is_alive(), "proxy harness did not stop"
        finally:
            logging.getLogger("trioproxy").removeHandler(self._log)
        if self._failure:
            raise self._failure[0]

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # reported on __exit__ / by check_alive
            self._failure.append(exc)
            self._ready.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        async with (
            raw_origin(self._origin) as upstream,
            running_proxy(upstream, self._settings) as proxy,
        ):
            self.address = proxy.address
            self._ready.set()
            await self._stop.wait()

    def errors(self) -> list[str]:
        """ERROR log lines since the last call (and forget them)."""
        messages, self._log.messages = self._log.messages, []
        return messages

    def check_alive(self) -> None:
        assert not self._failure, f"the server died: {self._failure!r}"
        assert self._thread.is_alive(), "the server thread is gone"

    def exchange(self, pieces: list[bytes], *, half_close: bool = True) -> Exchange:
        return exchange(self.address, pieces, half_close=half_close)


@dataclass
class Exchange:
    received: bytes
    reset: bool  # the proxy reset the connection instead of closing it cleanly
    hung: bool = False


def exchange(address: tuple[str, int], pieces: list[bytes], *, half_close: bool = True) -> Exchange:
    """Send ``pieces`` one by one (TCP_NODELAY: each in its own segment), half-close, and read
    until the proxy closes. A proxy that neither answers nor closes within HANG_S hangs."""
    with socket.create_connection(address, timeout=HANG_S) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            for piece in pieces:
                sock.sendall(piece)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the proxy answered and closed early: read what it said
        received = bytearray()
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except TimeoutError:
            return Exchange(bytes(received), reset=False, hung=True)
        except ConnectionResetError:
            return Exchange(bytes(received), reset=True)
        return Exchange(bytes(received), reset=False)


# Reading what came back, with h11 as a strict client.


def read_replies(data: bytes, *, method: bytes = b"GET") -> list[Reply]:
    """The complete responses in ``data`` (answers to ``method`` requests); what follows them
    is a clean ending (nothing, or a truncated message cut off by the close). Raises
    h11.RemoteProtocolError if the bytes are not valid HTTP/1.1."""
    return parse_responses(data, method=method, eof=False)


# Origins.


class RecordingOrigin:
    """An h11 origin that records every request and answers each with ``script`` (raw bytes
    of one complete response), or by default with an empty 200."""

    def __init__(self) -> None:
        self.requests: queue.Queue[tuple[h11.Request, bytes, list[tuple[bytes, bytes]]]] = (
            queue.Queue()
        )
        self.script: bytes | None = None

    def take(self) -> list[tuple[h11.Request, bytes, list[tuple[bytes, bytes]]]]:
        out = []
        while not self.requests.empty():
            out.append(self.requests.get_nowait())
        return out

    async def __call__(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=1 << 20)
        request: h11.Request | None = None
        body = bytearray()
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    conn.receive_data(data)
                elif isinstance(event, h11.Request):
                    request, body = event, bytearray()
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    assert request is not None
                    self.requests.put((request, bytes(body), list(event.headers.raw_items())))
                    await stream.send_all(self._answer(conn, request))
                    if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                        return
                    conn.start_next_cycle()
                else:
                    return
        except (h11.RemoteProtocolError, trio.BrokenResourceError):
            return  # what the proxy sent was not HTTP: the property that sent it will say so

    def _answer(self, conn: h11.Connection, request: h11.Request) -> bytes:
        if self.script is not None:
            # Scripted raw bytes: tell our h11 state machine a matching response went out.
            data = self.script
            conn.send(h11.Response(status_code=200, headers=[(b"Content-Length", b"0")]))
            conn.send(h11.EndOfMessage())
            return data
        # No body: the same bytes answer GET and HEAD, so a reader need not know which it was.
        head = conn.send(h11.Response(status_code=200, headers=[(b"Content-Length", b"0")]))
        return (head or b"") + (conn.send(h11.EndOfMessage()) or b"")


class AttackerOrigin:
    """Reads a request head, then sends whatever bytes it is told to and closes."""

    def __init__(self) -> None:
        self.script = b""

    async def __call__(self, stream: trio.SocketStream) -> None:
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return
                data += chunk
            await stream.send_all(self.script)
        except trio.BrokenResourceError:
            pass
