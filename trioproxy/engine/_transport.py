"""Byte transports under the peers: a TCP socket's descriptor, or an in-memory pipe for tests.

Every socket operation of the proxy goes through a `Transport`: the non-blocking read and
write (the fast path: a syscall, no scheduler), the waits for readiness, the zero-time checks
(readable now, closed by the peer) and the closes. `Peer` (`_peer`) builds deadlines,
fairness, cancellation rules and error translation on top, once, for both kinds.

`MemoryTransport` behaves as a loopback TCP connection does where the proxy can tell: a
bounded buffer per direction (a writer blocks when the reader does not read), half-close,
reset on close with unread input, EBADF after our own close, waiters woken by a close. So the
whole engine runs on it with trio's autojump clock, deterministically (`MemoryNetwork`).
"""

from __future__ import annotations

import errno
import os
import select
import socket
from collections import deque
from typing import Protocol

import trio
from trio.lowlevel import ParkingLot, checkpoint

# What one memory pipe holds before its writer must wait: a small socket buffer, so that
# backpressure shows up in tests at the sizes they use.
MEMORY_BUFFER_BYTES = 65536


class Transport(Protocol):
    """A connected byte stream. Reads and writes never wait; the waits are separate, so the
    caller decides where its checkpoints are (cancellation-safe I/O)."""

    @property
    def peer_ip(self) -> str: ...

    def read_nowait(self, max_bytes: int) -> bytes | None:
        """Up to ``max_bytes``; b"" at EOF; None if a read would wait. OSError if broken."""

    def write_nowait(self, data: memoryview) -> int | None:
        """How many bytes were taken; None if none could be without waiting."""

    async def wait_readable(self) -> None:
        """Until a read would not wait; trio.ClosedResourceError if we close it meanwhile."""

    async def wait_writable(self) -> None: ...

    def readable_now(self) -> bool:
        """Whether a read would not wait (bytes, EOF, an error, urgent data), without reading."""

    def peer_closed(self) -> bool:
        """Whether the peer closed or reset; bytes it sent first (a pipelined request) say no."""

    def shutdown_write(self) -> None:
        """Half-close: the peer reads EOF, we can still read."""

    def close(self) -> None:
        """Close now (synchronous: safe in ``finally`` under cancellation); idempotent."""

    @property
    def closed(self) -> bool: ...


class Listener(Protocol):
    """Where new connections come from."""

    async def accept(self) -> Transport: ...

    async def wait_pending(self) -> None:
        """Until a newcomer waits to be accepted (in the kernel's backlog)."""

    def close(self) -> None: ...


# --- Sockets ---------------------------------------------------------------------------------


class SocketTransport:
    """A connected TCP socket, read and written with ``os.read``/``os.write`` on its fd
    (trio's SocketStream goes through the scheduler twice per call)."""

    __slots__ = ("peer_ip", "socket")

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.socket = sock
        self.peer_ip = _peer_ip(sock)

    # The fd is asked for on every call, never cached: after a close its number may already
    # belong to another connection, and -1 makes the next syscall fail instead.

    def read_nowait(self, max_bytes: int) -> bytes | None:
        try:
            return os.read(self.socket.fileno(), max_bytes)
        except BlockingIOError:
            return None

    def write_nowait(self, data: memoryview) -> int | None:
        try:
            return os.write(self.socket.fileno(), data)
        except BlockingIOError:
            return None

    async def wait_readable(self) -> None:
        await trio.lowlevel.wait_readable(self._open_fd())

    async def wait_writable(self) -> None:
        await trio.lowlevel.wait_writable(self._open_fd())

    def _open_fd(self) -> int:
        fd = self.socket.fileno()
        if fd < 0:  # (-1 would reach epoll as a ValueError)
            raise trio.ClosedResourceError("this connection is closed")
        return fd

    # Closed by us, a connection reads as gone: a read fails at once, the peer is no more.

    def readable_now(self) -> bool:
        return self.closed or self._poll(select.POLLIN | select.POLLPRI)

    def peer_closed(self) -> bool:
        if self.closed:
            return True
        if not self._poll(select.POLLIN | select.POLLRDHUP):  # not urgent data
            return False
        # A peek that cannot wait, on a duplicate: trio's own recv would wait.
        try:
            with socket.fromfd(self.socket.fileno(), socket.AF_INET, socket.SOCK_STREAM) as dup:
                return not dup.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        except OSError:
            return True

    def _poll(self, events: int) -> bool:
        poller = select.poll()  # a zero-timeout poll: nothing read, nothing lost
        poller.register(self.socket.fileno(), events)
        return bool(poller.poll(0))

    def shutdown_write(self) -> None:
        self.socket.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.socket.close()

    @property
    def closed(self) -> bool:
        return self.socket.fileno() < 0


class SocketListenerSource:
    """A trio listening socket as a `Listener`."""

    __slots__ = ("listener",)

    def __init__(self, listener: trio.SocketListener) -> None:
        self.listener = listener

    async def accept(self) -> Transport:
        stream = await self.listener.accept()  # (sets TCP_NODELAY)
        return SocketTransport(stream.socket)

    async def wait_pending(self) -> None:
        await trio.lowlevel.wait_readable(self.listener.socket)

    def close(self) -> None:
        self.listener.socket.close()  # synchronous: safe under cancellation, idempotent


async def connect_socket(family: int, sockaddr: object) -> Transport:
    """Open a TCP connection (the pool's default connector); the caller bounds the wait."""
    sock = trio.socket.socket(family, socket.SOCK_STREAM)
    try:
        await sock.connect(sockaddr)
    except BaseException:
        sock.close()
        raise
    return SocketTransport(sock)


def _peer_ip(sock: trio.socket.SocketType) -> str:
    try:
        address = sock.getpeername()
    except OSError:
        return "-"
    return str(address[0]) if isinstance(address, tuple) else str(address)


# --- Memory ----------------------------------------------------------------------------------


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


class MemoryTransport:
    """One end of an in-memory connection; see `memory_transport_pair`."""

    __slots__ = ("_closed", "_incoming", "_outgoing", "peer_ip")

    def __init__(self, incoming: _Pipe, outgoing: _Pipe, peer_ip: str) -> None:
        self._incoming = incoming
        self._outgoing = outgoing
        self._closed = False
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
        if self.readable_now():
            await checkpoint()
        while not self.readable_now():
            await self._incoming.wake_reader.park()
        self._check_waitable()

    async def wait_writable(self) -> None:
        pipe = self._outgoing
        if self._writable():
            await checkpoint()
        while not self._writable():
            await pipe.wake_writer.park()
        self._check_waitable()

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
