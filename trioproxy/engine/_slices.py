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
# (A module's name, not h11's attribute: read for every response.)
_DATA = h11.Data


class _ReceivedData(Protocol):
    # What h11 gives as `Data.data` when it parsed the body: a bytearray (its stubs say
    # bytes; code compiled with mypyc checks the declared type and would refuse it).
    @property
    def data(self) -> bytes | bytearray: ...


def move_data(source: Peer, sink: Peer) -> tuple[NextEvent | None, int]:
    """Move up to a slice of consecutive Data events from ``source`` to ``sink`` as one event.

    Returns the first other event (NEED_DATA, EndOfMessage, ...), which the caller handles,
    or None when the slice ended first; and how many body bytes moved.
    """
    next_event = source.h11.next_event
    first = next_event()
    if type(first) is not _DATA:  # nothing to move: the end, or more bytes needed
        return first, 0
    received: _ReceivedData = first
    try:
        event: NextEvent | None = next_event()
        if type(event) is _DATA:  # more data events: moved on as one
            parts = [received.data, cast(_ReceivedData, event).data]
            try:
                event = _take(next_event, parts, _EVENTS_PER_SLICE - 2)
            finally:
                first = h11.Data(data=b"".join(parts))
                received = first
    finally:  # (what was taken goes on even if the parser then refuses the body)
        # Usually the body came as one event: the parser's own is passed on (events are
        # frozen, and h11 reads only the bytes of a Data it sends), no join, no new event.
        sink.queue(first)
    return event, len(received.data)


def take_data(source: Peer) -> tuple[NextEvent | None, bytes]:
    """`move_data` without the sink: the slice's bytes, for a hook to transform before they
    are queued. (An invalid body raises and ends the exchange: what this slice took is
    dropped with it, as the exchange is.)"""
    parts: list[bytes | bytearray] = []
    event = _take(source.h11.next_event, parts, _EVENTS_PER_SLICE)
    return event, b"".join(parts)


def _take(
    next_event: Callable[[], NextEvent], parts: list[bytes | bytearray], events: int
) -> NextEvent | None:
    """Up to ``events`` Data events' bytes into ``parts``; the first other event, or None."""
    append = parts.append
    for _ in range(events):
        event: NextEvent | None = next_event()
        if type(event) is not h11.Data:
            return event
        append(cast(_ReceivedData, event).data)
    return None


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
