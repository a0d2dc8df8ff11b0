"""A worker's side of ``--workers N``: its channel to the supervisor (`_supervisor`).

The worker says ``("ready",)`` once it listens, answers ``("ping",)`` with ``("pong",)`` (the
supervisor's heartbeat: a worker that stops answering is replaced), ``("metrics",)`` with a
snapshot of its counters, ``("reload", file, raw)`` by taking the new configuration and
``("control", method, target, body)`` (a harness endpoint the supervisor relays: /faults,
/journal) with ``("controlled", status, content_type, body, clock_offset_s)``, between
requests, on its event loop. ``clock_offset_s`` turns the journal's times (the event loop's
clock) into ``time.monotonic()``, which every process on the host shares, so the supervisor
can merge the workers' journals in time order. End of file on the channel means the supervisor is
gone: the worker drains.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any

import trio

from ._channel import MAX_FRAME_BYTES, ChannelError, FrameBuffer, Message, frame

__all__ = ["Channel", "answer_off_loop", "serve_supervisor", "worker_channel"]

if TYPE_CHECKING:
    from ..core._admincontrol import AdminControl

log = logging.getLogger("trioproxy")

# A harness endpoint's answer (status, content type, body) for (method, target, body).
Control = Callable[[bytes, bytes, bytes], Awaitable[tuple[int, bytes, bytes]]]
# An answer must fit one channel frame, with room to spare.
_MAX_CONTROL_BYTES = MAX_FRAME_BYTES // 2


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
    control: Control | None = None,
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
            elif message[0] == "control":
                await channel.send(await _controlled(control, *message[1:4]))
    log.warning("supervisor gone: stopping")
    shutdown()


async def answer_off_loop(
    control: AdminControl, method: bytes, target: bytes, body: bytes
) -> tuple[int, bytes, bytes]:
    """``control``'s answer; a journal read is rendered in a thread, from a copy taken here:
    ten thousand entries take a second, which the worker's requests must not wait for."""
    reading = method in (b"GET", b"HEAD") and target.partition(b"?")[0] == b"/journal"
    if reading and control.journal is not None:
        copied = replace(control, journal=control.journal.copy())
        # A copy: abandoned on cancellation (a drain), the thread harms nothing.
        answer = partial(copied.answer, method, target, body)
        return await trio.to_thread.run_sync(answer, abandon_on_cancel=True)
    if method == b"DELETE" and (freeing := control.in_slices(method, target)) is not None:
        # A clear is done at once; freeing a full journal's entries (a quarter of a second
        # at 100,000) goes in slices with a checkpoint between, as a single proxy does it.
        pieces = []
        for piece in freeing:
            pieces.append(piece)
            await trio.lowlevel.checkpoint()
        return 200, b"application/json", b"".join(pieces)
    return control.answer(method, target, body)


async def _controlled(
    control: Control | None, method: bytes, target: bytes, body: bytes
) -> Message:
    if control is None:
        status, content_type, answer = 404, b"text/plain", b"not served by this worker\n"
    else:
        status, content_type, answer = await control(method, target, body)
    if len(answer) > _MAX_CONTROL_BYTES:
        status, content_type = 507, b"application/json"
        answer = (
            b'{"error": "too large to gather from the workers: filter the journal (a query)'
            b' or lower admin.journal_size"}\n'
        )
    # The worker's clock to time.monotonic(): both read here, with no checkpoint between.
    offset_s = time.monotonic() - trio.current_time()
    return ("controlled", status, content_type, answer, offset_s)
