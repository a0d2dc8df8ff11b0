"""Byte transports under the peers: what one is (`Transport`), and a TCP socket's.

Every socket operation of the proxy goes through a `Transport`: the non-blocking read and
write (the fast path: a syscall, no scheduler), the waits for readiness, the zero-time checks
(readable now, closed by the peer) and the closes. `Peer` (`_peer`) builds deadlines,
fairness, cancellation rules and error translation on top, once, for every kind. The other
kind is `_memory`'s in-memory pipe, on which the whole engine runs in tests.
"""

from __future__ import annotations

import os
import select
import socket
from collections.abc import Awaitable
from typing import Protocol

import trio


class SocketCalls(Protocol):
    """A transport's read and write as a socket's non-blocking ``recv``/``send``: what
    `Transport.read_nowait` and `write_nowait` do, but BlockingIOError where they return
    None. The wire's hot path calls these: a socket's are its C calls, no frame between."""

    def recv(self, max_bytes: int, /) -> bytes: ...

    def send(self, data: bytes | memoryview, /) -> int: ...


class Transport(Protocol):
    """A connected byte stream. Reads and writes never wait; the waits are separate, so the
    caller decides where its checkpoints are (cancellation-safe I/O)."""

    @property
    def peer_ip(self) -> str: ...

    @property
    def calls(self) -> SocketCalls:
        """``read_nowait`` and ``write_nowait`` as a socket's calls (`SocketCalls`)."""

    def read_nowait(self, max_bytes: int) -> bytes | None:
        """Up to ``max_bytes``; b"" at EOF; None if a read would wait. OSError if broken."""

    def write_nowait(self, data: memoryview) -> int | None:
        """How many bytes were taken; None if none could be without waiting."""

    def wait_readable(self) -> Awaitable[None]:
        """Until a read would not wait; trio.ClosedResourceError if we close it meanwhile
        (raised by the call or by the wait)."""

    async def wait_writable(self) -> None: ...

    def wake_waiters(self) -> None:
        """Wake the tasks waiting on it with trio.ClosedResourceError, leaving it open (trio's
        ``notify_closing`` without the close): a registry's deadline reaching a waiter that
        holds no cancel scope (`OriginWaits`), which then looks why it woke."""

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
    """A connected TCP socket, read and written with the non-blocking ``recv``/``send`` of
    the stdlib socket under trio's (trio's SocketStream goes through the scheduler twice per
    call)."""

    __slots__ = ("_poller", "calls", "peer_ip", "socket")

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.socket = sock
        self.calls = _stdlib_socket(sock)  # (`SocketCalls`: the stdlib socket's own)
        self.peer_ip = _peer_ip(sock)
        self._poller: select.poll | None = None  # `readable_now`'s, made at its first use

    # Reads and writes are the stdlib socket's own C calls: no fd to ask for first, and the
    # kernel's socket calls (recvfrom, sendto) rather than read/write through the file layer.
    # Closed, the socket's fd is -1, so a call fails (EBADF) instead of reaching a number
    # that may already belong to another connection. Where the fd is needed it is asked for
    # on every call, never cached, for the same reason.

    def read_nowait(self, max_bytes: int) -> bytes | None:
        try:
            return self.calls.recv(max_bytes)
        except BlockingIOError:
            return None

    def write_nowait(self, data: memoryview) -> int | None:
        try:
            return self.calls.send(data)
        except BlockingIOError:
            return None

    def wait_readable(self) -> Awaitable[None]:
        # trio's awaitable itself, not a coroutine around it: one frame less per idle wait.
        return trio.lowlevel.wait_readable(self._open_fd())  # noqa: ASYNC105 (awaited by the caller)

    async def wait_writable(self) -> None:
        await trio.lowlevel.wait_writable(self._open_fd())

    def wake_waiters(self) -> None:
        fd = self.calls.fileno()
        if fd >= 0:  # (epoll forgets the fd; the next wait registers it again)
            trio.lowlevel.notify_closing(fd)

    def _open_fd(self) -> int:
        fd = self.calls.fileno()
        if fd < 0:  # (-1 would reach epoll as a ValueError)
            raise trio.ClosedResourceError("this connection is closed")
        return fd

    # Closed by us, a connection reads as gone: a read fails at once, the peer is no more.
    # (`peer_closed` asks for the fd once per check; `readable_now`, which the pool asks of
    # every connection it reuses, once per connection.)

    def readable_now(self) -> bool:
        # One poll object per connection, registered at the first ask (every reuse of a
        # pooled connection asks) and dropped by `close`: only an open fd is registered, an
        # open socket's fd never changes, and `close` is the only way the socket is closed,
        # so while the poller is held it names this connection: no fd to ask for again.
        poller = self._poller
        if poller is None:
            fd = self.calls.fileno()
            if fd < 0:
                return True
            poller = self._poller = select.poll()
            poller.register(fd, _READABLE)
        return bool(poller.poll(0))

    def peer_closed(self) -> bool:
        fd = self.calls.fileno()
        if fd < 0:
            return True
        if not _poll_now(fd, _CLOSED_OR_READABLE):  # not urgent data
            return False
        # A peek that cannot wait, on a duplicate: trio's own recv would wait.
        try:
            with socket.fromfd(fd, socket.AF_INET, socket.SOCK_STREAM) as dup:
                return not dup.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        except OSError:
            return True

    def shutdown_write(self) -> None:
        self.socket.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._poller = None  # (`readable_now`'s: its fd is about to be free for reuse)
        self.socket.close()

    @property
    def closed(self) -> bool:
        return self.calls.fileno() < 0


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


_READABLE = select.POLLIN | select.POLLPRI
_CLOSED_OR_READABLE = select.POLLIN | select.POLLRDHUP


def _poll_now(fd: int, events: int) -> bool:
    poller = select.poll()  # a zero-timeout poll: nothing read, nothing lost
    poller.register(fd, events)
    return bool(poller.poll(0))


class _FdCalls:
    """``recv``/``send``/``fileno`` as `SocketTransport` makes them, with ``os.read`` and
    ``os.write`` on a trio socket's fd, for a trio that keeps no stdlib socket inside."""

    __slots__ = ("_sock",)

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self._sock = sock

    def recv(self, max_bytes: int, /) -> bytes:
        return os.read(self._sock.fileno(), max_bytes)

    def send(self, data: bytes | memoryview, /) -> int:
        return os.write(self._sock.fileno(), data)

    def fileno(self) -> int:
        return self._sock.fileno()


def _stdlib_socket(sock: trio.socket.SocketType) -> socket.socket | _FdCalls:
    """The stdlib socket trio's wraps (closed with it: its fileno is then -1 too), or the
    same calls on trio's own fd where there is none."""
    inner = getattr(sock, "_sock", None)  # (trio's private attribute: hence the fallback)
    return inner if isinstance(inner, socket.socket) else _FdCalls(sock)


def _peer_ip(sock: trio.socket.SocketType) -> str:
    try:
        address = sock.getpeername()
    except OSError:
        return "-"
    return str(address[0]) if isinstance(address, tuple) else str(address)
