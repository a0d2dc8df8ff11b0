"""The in-memory transport: the engine's network in tests and in the simulation.

`MemoryTransport` behaves as a loopback TCP connection does where the proxy can tell (and
`tests/e2e/test_transport_parity.py` holds it to that): a bounded buffer per direction (a
writer blocks when the reader does not read), half-close, a reset on close with input unread
(what arrived before it is read first), the first write after the peer's clean close taken,
EBADF after our own close, waiters woken by a close, and one waiting reader and one waiting
writer per end (a second gets `trio.BusyResourceError`, as on trio's sockets). So the whole
engine runs on it with trio's autojump clock, deterministically (`MemoryNetwork`).
"""

from __future__ import annotations

import errno
from collections import deque

import trio
from trio.lowlevel import ParkingLot, checkpoint

from ._nowaitcalls import NowaitCalls
from ._transport import Transport

# What one memory pipe holds before its writer must wait: a small socket buffer, so that
# backpressure shows up in tests at the sizes they use.
MEMORY_BUFFER_BYTES = 65536


class _Pipe:
    """One direction of a memory connection."""

    __slots__ = (
        "buffer",
        "capacity",
        "eof",
        "reader_gone",
        "refused",
        "reset",
        "wake_reader",
        "wake_writer",
    )

    def __init__(self, capacity: int) -> None:
        self.buffer = bytearray()
        self.capacity = capacity
        self.eof = False  # the writer half-closed or closed
        self.reset = False  # the writer closed with input unread (TCP sends a reset)
        self.reader_gone = False
        self.refused = False  # a write reached a reader that is gone: its kernel reset it
        self.wake_reader = ParkingLot()
        self.wake_writer = ParkingLot()


class MemoryTransport(NowaitCalls):
    """One end of an in-memory connection; see `memory_transport_pair`."""

    __slots__ = ("_closed", "_incoming", "_outgoing", "_reading", "_wakes", "_writing", "peer_ip")

    def __init__(self, incoming: _Pipe, outgoing: _Pipe, peer_ip: str) -> None:
        self._incoming = incoming
        self._outgoing = outgoing
        self._closed = False
        self._reading = False  # a task waits in wait_readable
        self._writing = False  # a task waits in wait_writable
        self._wakes = 0  # wake_waiters calls: a waiter that sees it change was woken
        self.peer_ip = peer_ip

    def read_nowait(self, max_bytes: int) -> bytes | None:
        self._check_open()
        pipe = self._incoming
        if pipe.buffer:  # (Linux too hands out what arrived before a reset, then the error)
            data = bytes(pipe.buffer[:max_bytes])
            del pipe.buffer[:max_bytes]
            pipe.wake_writer.unpark_all()
            return data
        if pipe.reset:
            raise ConnectionResetError(errno.ECONNRESET, "connection reset by peer")
        return b"" if pipe.eof else None

    def write_nowait(self, data: memoryview) -> int | None:
        self._check_open()
        pipe = self._outgoing
        if pipe.eof:  # we shut our side down
            raise BrokenPipeError(errno.EPIPE, "broken pipe")
        if pipe.reader_gone:
            # As TCP: the first write after the peer closed cleanly is taken (the peer's
            # kernel answers it with a reset); after that, or after a reset, writes fail.
            if pipe.refused or self._incoming.reset:
                raise ConnectionResetError(errno.ECONNRESET, "connection reset by peer")
            pipe.refused = True
            return len(data)
        room = pipe.capacity - len(pipe.buffer)
        if room <= 0:
            return None
        taken = min(room, len(data))
        pipe.buffer += data[:taken]
        pipe.wake_reader.unpark_all()
        return taken

    async def wait_readable(self) -> None:
        # As strict as trio's epoll backend: one reader per fd (a second one would race the
        # first for the same bytes), told at once, before any checkpoint.
        if self._reading:
            raise trio.BusyResourceError("another task is already reading from this connection")
        self._reading = True
        wakes = self._wakes
        try:
            if self.readable_now():
                await checkpoint()
            while not self.readable_now():
                await self._incoming.wake_reader.park()
                self._check_woken(wakes)
        finally:
            self._reading = False
        self._check_waitable()

    async def wait_writable(self) -> None:
        if self._writing:
            raise trio.BusyResourceError("another task is already writing to this connection")
        pipe = self._outgoing
        self._writing = True
        wakes = self._wakes
        try:
            if self._writable():
                await checkpoint()
            while not self._writable():
                await pipe.wake_writer.park()
                self._check_woken(wakes)
        finally:
            self._writing = False
        self._check_waitable()

    def wake_waiters(self) -> None:
        # As trio's notify_closing: only the tasks waiting now; the connection stays open.
        self._wakes += 1
        self._incoming.wake_reader.unpark_all()
        self._outgoing.wake_writer.unpark_all()

    def _check_woken(self, wakes: int) -> None:
        if self._wakes != wakes and not self._closed:
            raise trio.ClosedResourceError("woken while waiting (the connection stays open)")

    def _writable(self) -> bool:
        pipe = self._outgoing
        return self._closed or pipe.reader_gone or len(pipe.buffer) < pipe.capacity

    def readable_now(self) -> bool:
        pipe = self._incoming
        return self._closed or bool(pipe.buffer) or pipe.eof or pipe.reset

    def peer_closed(self) -> bool:
        pipe = self._incoming
        return self._closed or (not pipe.buffer and (pipe.eof or pipe.reset))

    def shutdown_write(self) -> None:
        self._check_open()
        self._outgoing.eof = True
        self._outgoing.wake_reader.unpark_all()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        incoming, outgoing = self._incoming, self._outgoing
        if incoming.buffer:
            outgoing.reset = True  # closed with input unread: the kernel sends a reset
        outgoing.eof = True
        incoming.reader_gone = True
        incoming.buffer.clear()
        for lot in (incoming.wake_reader, incoming.wake_writer, outgoing.wake_reader):
            lot.unpark_all()
        outgoing.wake_writer.unpark_all()

    def reset(self) -> None:
        """Close with a reset whatever is unread (SO_LINGER 0): the peer's reads fail."""
        if self._closed:
            return  # closed already: nothing is left to reset
        self._outgoing.reset = True
        self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise OSError(errno.EBADF, "bad file descriptor")

    def _check_waitable(self) -> None:
        if self._closed:  # closed by another task while this one waited (as trio says it)
            raise trio.ClosedResourceError("another task closed this connection")


def memory_transport_pair(
    *,
    capacity: int = MEMORY_BUFFER_BYTES,
    ips: tuple[str, str] = ("127.0.0.1", "127.0.0.1"),
) -> tuple[MemoryTransport, MemoryTransport]:
    """Two connected ends; each one's ``peer_ip`` is the other's address in ``ips``."""
    forth, back = _Pipe(capacity), _Pipe(capacity)
    return MemoryTransport(back, forth, ips[1]), MemoryTransport(forth, back, ips[0])


class MemoryListener:
    """A listening address on a `MemoryNetwork`: connects queue in a backlog until accepted.

    It remembers every connection made to it, so a test can compare what the proxy counts
    (its pool, its open connections) with what is actually open (`open_ends`)."""

    def __init__(self, backlog: int = 4096) -> None:
        self._backlog: deque[MemoryTransport] = deque()
        self._limit = backlog
        self._arrived = ParkingLot()
        self.closed = False
        self.connections: list[tuple[MemoryTransport, MemoryTransport]] = []  # (ours, theirs)

    def connect(self, client_ip: str, capacity: int) -> MemoryTransport:
        if self.closed or len(self._backlog) >= self._limit:
            raise ConnectionRefusedError(errno.ECONNREFUSED, "connection refused")
        ours, theirs = memory_transport_pair(capacity=capacity, ips=(client_ip, "127.0.0.1"))
        self._backlog.append(theirs)
        self.connections.append((ours, theirs))
        self._arrived.unpark_all()
        return ours

    def open_ends(self, *, accepted: bool) -> list[MemoryTransport]:
        """The ends still open of the connections made here: the accepting ends taken out of
        the backlog (``accepted``), or else the connecting ends."""
        if accepted:
            waiting = {id(end) for end in self._backlog}
            ends = [theirs for _, theirs in self.connections if id(theirs) not in waiting]
        else:
            ends = [ours for ours, _ in self.connections]
        return [end for end in ends if not end.closed]

    async def accept(self) -> Transport:
        await self.wait_pending()
        return self._backlog.popleft()

    async def wait_pending(self) -> None:
        await checkpoint()
        while not self._backlog:
            if self.closed:
                raise trio.ClosedResourceError("listener closed")
            await self._arrived.park()

    def close(self) -> None:
        self.closed = True
        while self._backlog:  # never accepted: their clients see a reset
            self._backlog.popleft().reset()
        self._arrived.unpark_all()


class MemoryNetwork:
    """Addresses to memory listeners: what an engine test or the simulation wires the proxy,
    its clients and its origin with. ``connect`` is a pool connector."""

    def __init__(self, capacity: int = MEMORY_BUFFER_BYTES) -> None:
        self.capacity = capacity
        self._listeners: dict[object, MemoryListener] = {}

    def listen(self, address: object) -> MemoryListener:
        listener = self._listeners[address] = MemoryListener()
        return listener

    def open(self, address: object, client_ip: str = "127.0.0.1") -> MemoryTransport:
        """Connect without waiting (a memory connect never does)."""
        listener = self._listeners.get(address)
        if listener is None:
            raise ConnectionRefusedError(errno.ECONNREFUSED, "connection refused")
        return listener.connect(client_ip, self.capacity)

    async def connect(self, family: int, sockaddr: object) -> Transport:
        await checkpoint()
        return self.open(sockaddr)
