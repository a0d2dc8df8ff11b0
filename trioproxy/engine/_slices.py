"""Body events moved and chunked framing checked in bounded slices: no body holds the loop.

A received buffer can hold ten thousand one-byte chunks; each helper handles at most a slice of
them before the caller (or it) yields, and consecutive data goes on as one event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, cast

import trio

from ..core._chunked import ChunkedChecker
from ..core._strict import FramingError
from ._h11 import NextEvent, h11
from ._peer import Peer

# h11 events (or chunk-size lines) handled before the task yields: a received buffer can
# hold ten thousand one-byte chunks, and other connections must not wait for all of them.
_EVENTS_PER_SLICE = 64


class _ReceivedData(Protocol):
    # What h11 gives as `Data.data` when it parsed the body: a bytearray (its stubs say
    # bytes; code compiled with mypyc checks the declared type and would refuse it).
    data: bytes | bytearray


def move_data(source: Peer, sink: Peer) -> tuple[NextEvent | None, int]:
    """Move up to a slice of consecutive Data events from ``source`` to ``sink`` as one event.

    Returns the first other event (NEED_DATA, EndOfMessage, ...), which the caller handles,
    or None when the slice ended first; and how many body bytes moved.
    """
    parts: list[bytes | bytearray] = []
    try:
        event = _take(source, parts)
    finally:
        moved = b"".join(parts)
        if moved:
            sink.queue(h11.Data(data=moved))
    return event, len(moved)


def take_data(source: Peer) -> tuple[NextEvent | None, bytes]:
    """`move_data` without the sink: the slice's bytes, for a hook to transform before they
    are queued. (An invalid body raises and ends the exchange: what this slice took is
    dropped with it, as the exchange is.)"""
    parts: list[bytes | bytearray] = []
    event = _take(source, parts)
    return event, b"".join(parts)


def _take(source: Peer, parts: list[bytes | bytearray]) -> NextEvent | None:
    event: NextEvent | None = None
    for _ in range(_EVENTS_PER_SLICE):
        event = source.h11.next_event()
        if type(event) is not h11.Data:
            break
        parts.append(cast(_ReceivedData, event).data)
        event = None
    return event


async def check_chunks(
    chunks: ChunkedChecker, data: bytes | bytearray, error: Callable[..., Exception]
) -> None:
    """Feed the strict chunked checker, a slice of chunk-size lines at a time."""
    pos = 0
    while True:
        try:
            pos = chunks.feed(data, pos, max_chunks=_EVENTS_PER_SLICE)
        except FramingError as exc:
            raise error(f"malformed chunked body: {exc}", status=exc.status) from exc
        if pos >= len(data):
            return
        await trio.lowlevel.checkpoint()
