"""One side of an exchange: a trio stream paired with its h11 state machine.

This is where trio's and h11's errors become the proxy's vocabulary (`_errors`), once, and
where every read and write gets its deadline. Writes are coalesced: events are queued as
bytes and flushed in one ``send_all`` just before we would wait for input, so a small
response's head, body and end go out in one segment.
"""

from __future__ import annotations

import math
import os
import select
from collections.abc import Awaitable, Callable

import trio

from ._errors import ClientError, ClientGone, UpstreamClosed, UpstreamError, UpstreamTimeout
from ._h11 import h11

RECEIVE_SIZE = 65536
# Socket calls that may complete without waiting before we yield to other tasks anyway.
_MAX_UNYIELDED = 8


class Peer:
    __slots__ = ("_out", "_unyielded", "bytes_received", "bytes_sent", "h11", "stream")

    def __init__(self, stream: trio.SocketStream, conn: h11.Connection) -> None:
        self.stream: trio.SocketStream = stream
        self.h11 = conn
        self._out: list[bytes] = []
        self._unyielded = 0
        self.bytes_sent = 0
        self.bytes_received = 0

    def queue(self, event: h11.Event) -> None:
        try:
            data = self.h11.send(event)
        except h11.LocalProtocolError as exc:
            # h11's parser took something its writer will not send (the other side's
            # message, which is all we forward): that message cannot be forwarded.
            raise self._unsendable(exc) from exc
        if data:
            self._out.append(data)

    @property
    def has_queued(self) -> bool:
        return bool(self._out)

    @property
    def queued_bytes(self) -> int:
        return sum(map(len, self._out))

    async def flush(self, timeout_s: float) -> None:
        if not self._out:
            return
        data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
        self._out.clear()
        try:
            await self._send_all(data, timeout_s)
        except BaseException:
            self.h11.send_failed()  # the peer got an unknown prefix: this h11 side is done
            raise

    async def receive(self, timeout_s: float) -> bytes:
        """Read once from the stream into h11 and return what was read; b"" (EOF) is passed
        on for h11 to judge."""
        data = await self._recv(timeout_s)
        self.bytes_received += len(data)
        self.h11.receive_data(data)
        return data

    # The syscalls are tried first and trio is asked to wait only when they would block.
    # trio's SocketStream checkpoints twice per call (two trips through the scheduler);
    # on a proxy's hot path, where most sends and many reads complete at once, that was the
    # largest single cost. Fairness is kept by yielding after a run of calls that never
    # waited, and every wait has its deadline.

    async def _recv(self, timeout_s: float) -> bytes:
        fd = self.stream.socket.fileno()
        while True:
            try:
                data = os.read(fd, RECEIVE_SIZE)
            except BlockingIOError:
                await self._wait(trio.lowlevel.wait_readable, fd, timeout_s, "receiving")
                continue
            except OSError as exc:
                raise self._gone(exc) from exc
            await self._maybe_yield()
            return data

    async def _send_all(self, data: bytes, timeout_s: float) -> None:
        fd = self.stream.socket.fileno()
        view = memoryview(data)
        while view:
            try:
                sent = os.write(fd, view)
            except BlockingIOError:
                await self._wait(trio.lowlevel.wait_writable, fd, timeout_s, "sending")
                continue
            except OSError as exc:
                raise self._gone(exc) from exc
            self.bytes_sent += sent  # as written: a send cut short still counts what went
            view = view[sent:]
        await self._maybe_yield()

    async def _wait(
        self, wait: Callable[[int], Awaitable[None]], fd: int, timeout_s: float, doing: str
    ) -> None:
        self._unyielded = 0
        if timeout_s == math.inf:  # the caller's own scope bounds it: no second scope
            try:
                await wait(fd)
            except trio.ClosedResourceError as exc:
                raise self._gone(exc) from exc
            return
        with trio.CancelScope(deadline=trio.current_time() + timeout_s) as deadline:
            try:
                await wait(fd)
            except trio.ClosedResourceError as exc:  # closed by another task meanwhile
                raise self._gone(exc) from exc
        if deadline.cancelled_caught:
            raise self._too_slow(doing)

    async def _maybe_yield(self) -> None:
        self._unyielded += 1
        if self._unyielded >= _MAX_UNYIELDED:
            self._unyielded = 0
            await trio.lowlevel.checkpoint()

    def close(self) -> None:
        """Close at once (synchronously, so it is safe in ``finally`` under cancellation)."""
        self.stream.socket.close()

    @property
    def closed(self) -> bool:
        return self.stream.socket.fileno() < 0

    def _gone(self, exc: BaseException) -> Exception:
        raise NotImplementedError

    def _too_slow(self, doing: str) -> Exception:
        raise NotImplementedError

    def _unsendable(self, exc: h11.LocalProtocolError) -> Exception:
        raise NotImplementedError


class Downstream(Peer):
    """The client's connection; ``h11`` is in the SERVER role."""

    __slots__ = ("peer_ip",)

    def __init__(self, stream: trio.SocketStream, conn: h11.Connection, peer_ip: str) -> None:
        super().__init__(stream, conn)
        self.peer_ip = peer_ip

    def _gone(self, exc: BaseException) -> Exception:
        return ClientGone(f"client connection lost: {exc}")

    def _too_slow(self, doing: str) -> Exception:
        if doing == "sending":
            return ClientGone("client stopped reading")
        return ClientError("client too slow", status=408)

    def _unsendable(self, exc: h11.LocalProtocolError) -> Exception:
        return UpstreamError(f"upstream response cannot be forwarded: {exc}")


class UpstreamConnection(Peer):
    """A connection to the upstream; ``h11`` is in the CLIENT role. Pooled between exchanges."""

    __slots__ = ("address", "detached", "idle_since", "uses")

    def __init__(self, stream: trio.SocketStream, conn: h11.Connection, address: str) -> None:
        super().__init__(stream, conn)
        self.address = address
        self.idle_since = 0.0
        self.uses = 0
        self.detached = False  # no longer counted by the pool (a tunnel)

    @property
    def reusable(self) -> bool:
        # Bytes past the response's framing (a body on a HEAD or 304, a short Content-Length,
        # a second response) are already in h11's buffer, out of poll()'s sight: a
        # connection holding any would answer the next client's request with them.
        return (
            self.h11.our_state is h11.DONE
            and self.h11.their_state is h11.DONE
            and not self._out
            and self.h11.trailing_data == (b"", False)
        )

    def looks_dead(self) -> bool:
        """An idle HTTP connection with something to read has been closed (or broken) by
        the origin: an EOF, a reset, or bytes nobody asked for. Checked without blocking."""
        poller = select.poll()
        poller.register(self.stream.socket.fileno(), select.POLLIN | select.POLLPRI)
        return bool(poller.poll(0))

    def _gone(self, exc: BaseException) -> Exception:
        if self.bytes_received == 0:
            return UpstreamClosed(f"upstream {self.address} closed the connection: {exc}")
        return UpstreamError(f"upstream {self.address} connection lost: {exc}")

    def _too_slow(self, doing: str) -> Exception:
        return UpstreamTimeout(f"upstream {self.address} timed out {doing}")

    def _unsendable(self, exc: h11.LocalProtocolError) -> Exception:
        return ClientError(f"request cannot be forwarded: {exc}")
