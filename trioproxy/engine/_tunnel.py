"""Splicing raw bytes both ways after a 101 Switching Protocols (WebSocket tunnels)."""

from __future__ import annotations

import math

import trio

from ..core._errors import ClientGone, ProxyError
from ._peer import Peer


async def splice(
    client: Peer, upstream: Peer, *, idle_timeout_s: float, fin_timeout_s: float
) -> None:
    """Copy bytes both ways until both sides have closed, either breaks, or nothing moves.

    A half-close (EOF) is passed on as a half-close. From then on the tunnel may idle only
    ``fin_timeout_s`` instead of ``idle_timeout_s`` (HAProxy's client-fin/server-fin idea): a
    peer that never closes its half cannot pin the tunnel for an hour.

    Bytes h11 had already buffered past the protocol switch (``trailing_data``: a frame sent in
    the same packet as the request or the 101) go first. Every byte goes through the peers'
    own reads and writes, with their fairness and cancellation rules; the idle scope is the
    one deadline.
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
                        await sink.send_all(pending, math.inf)
                    while data := await source.recv(math.inf):
                        idle.deadline = trio.current_time() + window
                        await sink.send_all(data, math.inf)
                    sink.send_eof()
                except (ClientGone, ProxyError):
                    nursery.cancel_scope.cancel()  # one side is gone: the tunnel is over
                    return
                window = min(window, fin_timeout_s)
                idle.deadline = min(idle.deadline, trio.current_time() + window)

            nursery.start_soon(pipe, client, upstream)
            nursery.start_soon(pipe, upstream, client)
