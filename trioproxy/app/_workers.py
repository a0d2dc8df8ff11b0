"""A worker's side of ``--workers N``: its channel to the supervisor (`_supervisor`).

The worker says ``("ready",)`` once it listens, answers ``("ping",)`` with ``("pong",)`` (the
supervisor's heartbeat: a worker that stops answering is replaced), ``("metrics",)`` with a
snapshot of its counters and ``("reload", file, raw)`` by taking the new configuration,
between requests, on its event loop. End of file on the channel means the supervisor is
gone: the worker drains.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from ._channel import ChannelError, FrameBuffer, Message, frame

__all__ = ["Channel", "serve_supervisor", "worker_channel"]

log = logging.getLogger("trioproxy")


class Channel:
    """A worker's end of its socketpair to the supervisor: whole messages in and out."""

    def __init__(self, sock: socket.socket) -> None:
        self._stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
        self._buffer = FrameBuffer()

    async def receive(self) -> Message | None:
        """The next message; None at end of file (or a broken channel)."""
        while (message := self._buffer.next()) is None:
            try:
                data = await self._stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return None
            if not data:
                return None
            self._buffer.feed(data)
        return message

    async def send(self, message: Message) -> None:
        await self._stream.send_all(frame(message))


def worker_channel() -> Channel | None:
    """In a worker: the channel to the supervisor (None when run on its own)."""
    fd = os.environ.pop("TRIOPROXY_CHANNEL_FD", "")
    if not fd:
        return None
    return Channel(socket.socket(fileno=int(fd)))


async def serve_supervisor(
    channel: Channel,
    *,
    metrics: Callable[[], Any],
    reload: Callable[[str, bytes | None], Awaitable[str]],
    shutdown: Callable[[], None],
) -> None:
    """In a worker: say ready, answer the supervisor's questions, and drain (``shutdown``)
    once the channel reads end of file: the supervisor is gone."""
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await channel.send(("ready",))
        while True:
            try:
                message = await channel.receive()
            except ChannelError as exc:
                log.error("supervisor channel: %s", exc)
                message = None
            if message is None:
                break
            if message[0] == "ping":  # the supervisor's heartbeat: this loop still runs
                await channel.send(("pong",))
            elif message[0] == "metrics":
                await channel.send(("metrics", metrics()))
            elif message[0] == "reload":
                await channel.send(("reloaded", await reload(message[1], message[2])))
    log.warning("supervisor gone: stopping")
    shutdown()
