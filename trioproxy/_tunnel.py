"""Splicing raw bytes both ways after a 101 Switching Protocols (WebSocket tunnels)."""

from __future__ import annotations

import trio

from ._peer import RECEIVE_SIZE, Peer


async def splice(
    client: Peer, upstream: Peer, *, idle_timeout_s: float, fin_timeout_s: float
) -> None:
    """Copy bytes both ways until both sides have closed, either breaks, or nothing moves.

    A half-close (EOF) is passed on as a half-close. From then on the tunnel may idle only
    ``fin_timeout_s`` instead of ``idle_timeout_s`` (HAProxy's client-fin/server-fin idea): a
    peer that never closes its half cannot pin the tunnel for an hour.

    Bytes h11 had already buffered past the protocol switch (``trailing_data``: a frame sent in
    the same packet as the request or the 101) go first.
    """
    window = idle_timeout_s
    with trio.CancelScope() as idle:
        idle.deadline = trio.current_time() + window
        async with trio.open_nursery() as nursery:

            async def pipe(source: Peer, sink: Peer) -> None:
                nonlocal window
                try:
                    pending = source.h11.trailing_data[0]
                    if pending:
                        await sink.stream.send_all(pending)
                        sink.bytes_sent += len(pending)
                    while data := await source.stream.receive_some(RECEIVE_SIZE):
                        idle.deadline = trio.current_time() + window
                        await sink.stream.send_all(data)
                        sink.bytes_sent += len(data)
                        source.bytes_received += len(data)
                    await sink.stream.send_eof()
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    nursery.cancel_scope.cancel()  # one side is gone: the tunnel is over
                    return
                window = min(window, fin_timeout_s)
                idle.deadline = min(idle.deadline, trio.current_time() + window)

            nursery.start_soon(pipe, client, upstream)
            nursery.start_soon(pipe, upstream, client)
