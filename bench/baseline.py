"""The baseline candidate: the simplest keep-alive trio+h11 reverse forwarder, no features.

``python bench/baseline.py --listen 127.0.0.1:0 --upstream 127.0.0.1:8080`` writes
``listening on HOST:PORT`` to stderr once it accepts. Each client connection gets its own
upstream connection (opened on its first request, kept alive, reopened when the origin
closes it); a request and its body go up, then the response and its body come back, with
h11 framing both sides (Content-Length or chunked). No access log, no rules, no limits, no
pool: the benchmark sets it beside trioproxy so the table shows what trioproxy's features
cost. Like ``trioproxy/engine/_h11.py``, it runs on h11-mypyc when installed unless
``TRIOPROXY_PARSER=h11``, so both candidates always run on the same parser.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Iterable
from functools import partial
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    import h11

    PARSER: str
else:

    def _choose() -> tuple[object, str]:
        wanted = os.environ.get("TRIOPROXY_PARSER", "auto")
        if wanted in ("auto", "h11-mypyc"):
            try:
                return importlib.import_module("h11_mypyc"), "h11-mypyc"
            except ImportError:
                if wanted == "h11-mypyc":
                    raise
        return importlib.import_module("h11"), "h11"

    h11, PARSER = _choose()

READ_SIZE = 65536
IDLE_S = 75.0  # a client's keep-alive idle time, and the bound on every single wait
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
    }
)


class Peer:
    """A stream and its h11 connection; ``next_event`` reads until h11 has an event."""

    def __init__(self, stream: trio.SocketStream, role: type[h11.CLIENT] | type[h11.SERVER]):
        self.stream = stream
        self.conn = h11.Connection(role)

    async def next_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            self.conn.receive_data(await self.stream.receive_some(READ_SIZE))

    async def send(self, event: h11.Event) -> None:
        data = self.conn.send(event)
        if data:
            await self.stream.send_all(data)


def _forwardable(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [(n, v) for n, v in headers if n not in HOP_BY_HOP]


async def _relay_body(src: Peer, dst: Peer) -> None:
    """Data events from ``src`` to ``dst`` up to and including EndOfMessage."""
    while True:
        event = await src.next_event()
        if isinstance(event, h11.Data):
            await dst.send(h11.Data(data=event.data))
        elif isinstance(event, h11.EndOfMessage):
            await dst.send(h11.EndOfMessage())
            return
        else:
            raise h11.RemoteProtocolError(f"unexpected {type(event).__name__} in a body")


async def handle(upstream: tuple[str, int], stream: trio.SocketStream) -> None:
    client = Peer(stream, h11.SERVER)
    up: Peer | None = None
    try:
        with trio.CancelScope() as scope:
            while True:
                scope.deadline = trio.current_time() + IDLE_S
                request = await client.next_event()
                if not isinstance(request, h11.Request):
                    return  # ConnectionClosed or a protocol error: nothing to answer
                if up is None or up.conn.our_state is not h11.IDLE:
                    if up is not None:
                        await up.stream.aclose()
                    up = Peer(await trio.open_tcp_stream(*upstream), h11.CLIENT)
                await up.send(
                    h11.Request(
                        method=request.method,
                        target=request.target,
                        headers=_forwardable(request.headers),
                    )
                )
                await _relay_body(client, up)
                while True:
                    response = await up.next_event()
                    if not isinstance(response, h11.InformationalResponse):
                        break
                if not isinstance(response, h11.Response):
                    raise h11.RemoteProtocolError("the origin sent no response")
                await client.send(
                    h11.Response(
                        status_code=response.status_code,
                        headers=_forwardable(response.headers),
                        reason=response.reason,
                    )
                )
                await _relay_body(up, client)
                if client.conn.our_state is not h11.DONE or client.conn.their_state is not h11.DONE:
                    return  # Connection: close, or an HTTP/1.0 client
                client.conn.start_next_cycle()
                if up.conn.our_state is h11.DONE and up.conn.their_state is h11.DONE:
                    up.conn.start_next_cycle()
    except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
        if client.conn.our_state is h11.SEND_RESPONSE:
            bad_gateway = h11.Response(status_code=502, headers=[(b"content-length", b"0")])
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await client.send(bad_gateway)
    finally:
        if up is not None:
            await up.stream.aclose()
        await stream.aclose()


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"want HOST:PORT, got {text!r}")
    return host, int(port)


async def serve(listen: tuple[str, int], upstream: tuple[str, int]) -> None:
    listeners = await trio.open_tcp_listeners(listen[1], host=listen[0], backlog=4096)
    host, port = listeners[0].socket.getsockname()[:2]
    print(f"baseline ({PARSER}): listening on {host}:{port}", file=sys.stderr, flush=True)
    await trio.serve_listeners(partial(handle, upstream), listeners)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python bench/baseline.py", description=__doc__)
    p.add_argument("--listen", type=_host_port, default=("127.0.0.1", 0), metavar="HOST:PORT")
    p.add_argument("--upstream", type=_host_port, required=True, metavar="HOST:PORT")
    args = p.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(serve, args.listen, args.upstream)
    return 0


if __name__ == "__main__":
    sys.exit(main())
