"""One side of an exchange: a transport paired with its h11 state machine, and every read and
write on it (`Wire`: the reads and writes; `Peer`: with h11; `Downstream`, `UpstreamConnection`).

This is where trio's and h11's errors become the proxy's vocabulary (`_errors`), once, and
where every read and write gets its deadline, its fairness and its cancellation rules, over
either transport (`_transport`: a socket, or memory in tests):

* **Fast path.** A read or write that would not wait is tried first; trio is asked to wait
  only when it would block.
* **Lossless cancellation** (trio's own socket rule). Cancellation is checked *before* a
  syscall; once a syscall has succeeded, its result is recorded before any checkpoint, and
  the checkpoint that follows is cancel-shielded. A byte read is never dropped and a write
  that completed is never reported failed.
* **Fairness.** One event loop serves every client, so a task whose sockets are always ready
  must still let the others run: after a syscall that completed without waiting, the task
  yields (a wait is a yield already). After a write, unless nothing else is runnable
  (`_fairness`: at most one such yield per step is skipped); after a read, always, so a
  step never reads more than one buffer. Work per received buffer is bounded by the callers
  (`_slices` walks h11 events in slices).
* **Coalesced writes.** Events are queued as bytes and flushed in one write just before we
  would wait for input, so a small response's head, body and end go out in one segment.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeAlias

import trio
from trio.lowlevel import cancel_shielded_checkpoint, checkpoint_if_cancelled

from ..config._settings import Limits
from ..core._errors import (
    ClientError,
    ClientGone,
    ProxyError,
    UpstreamClosed,
    UpstreamError,
    UpstreamTimeout,
)
from ._busypoll import spin_until_readable
from ._fairness import RUN_CONTEXT, SHIELDED, SHIELDED_YIELD, checkpoint_due, may_skip_yield
from ._h11 import END_OF_MESSAGE, h11
from ._transport import SocketTransport, Transport

RECEIVE_SIZE = 65536
_DONE = h11.DONE
_NOTHING = memoryview(b"")  # shared: an idle connection needs no view of its own


# A minimum average transfer rate after a grace period (Apache's ``MinRate`` idea): when the
# grace ends, the byte count the transfer started at, and the rate in bytes per second.
# Inactivity timeouts alone let a peer hold a connection for ever by moving one byte just
# inside each timeout; a floor bounds how long any transfer of N bytes may take. (A tuple:
# every response starts one, and a class's instance costs several times as much to make.)
RateFloor: TypeAlias = tuple[float, int, float]


def floor_deadline(floor: RateFloor, transferred: int) -> float:
    """When the transfer falls below ``floor`` unless more bytes move."""
    grace_end, start_bytes, bytes_per_s = floor
    return grace_end + (transferred - start_bytes) / bytes_per_s


class Wakes(Protocol):
    """Where a waiter holding no cancel scope of its own is woken at a time
    (`_context.OriginWaits`)."""

    def add(self, wire: Wire, at: float) -> None: ...

    def discard(self, wire: Wire) -> bool:
        """False if the wire was woken (or is being woken) meanwhile."""


class Wire:
    """A transport's reads and writes with deadlines, fairness, cancellation rules and the
    proxy's errors (`_gone`, `_too_slow`: each kind of connection says its own)."""

    __slots__ = (
        "_out",
        "_sending",
        "bytes_received",
        "bytes_sent",
        "clock",
        "receive_floor",
        "send_floor",
        "transport",
    )

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        # The run's clock, held: `clock.current_time()` is two calls less than
        # `trio.current_time()`, and a connection never outlives its run (nor its clock).
        self.clock = trio.lowlevel.current_clock()
        self._out: list[bytes] = []  # queued, not yet being sent
        self._sending = _NOTHING  # the unsent rest of the buffer being sent
        self.bytes_sent = 0
        self.bytes_received = 0
        self.receive_floor: RateFloor | None = None
        self.send_floor: RateFloor | None = None

    # --- Queued bytes ------------------------------------------------------------------------

    @property
    def has_queued(self) -> bool:
        return bool(self._out or self._sending)

    @property
    def queued_bytes(self) -> int:
        out = self._out
        if out:
            return len(self._sending) + sum(map(len, out))
        return len(self._sending)  # (the usual answer where a head starts: no map, no sum)

    # --- Writing -----------------------------------------------------------------------------

    async def send_queued(self, timeout_s: float) -> None:
        """Send everything queued. Cancelled while waiting, it keeps what is unsent queued,
        so a caller that raced it against something else can go on later."""
        if checkpoint_due():  # (`checkpoint_if_cancelled`, its coroutine only if due)
            await checkpoint_if_cancelled()
        if self.send_queued_nowait():
            if not may_skip_yield():
                await cancel_shielded_checkpoint()  # fairness: everything went out at once
            return
        await self._send_waiting(timeout_s)

    async def _send_waiting(self, timeout_s: float) -> None:
        """The rest of `send_queued` once the transport took not everything at once."""
        wait = self.transport.wait_writable
        while True:  # (waiting outside any handler, as in recv; the wait is the yield)
            await self._wait(wait, timeout_s, self.send_floor, "sending")
            if self.send_queued_nowait():
                return

    def send_queued_nowait(self) -> bool:
        """Send what the transport takes now, without waiting; True if nothing is left.
        Each write is recorded as it completes: nothing here can be cancelled."""
        out = self._out
        if self._sending:  # the rest of a write that stopped short goes first
            return self._send_rest(self._sending)
        if not out:
            return True
        # The usual case: everything queued, joined (one part: no copy), goes in one write,
        # with no view made (only a rest needs one) and nothing left to record.
        data = b"".join(out)
        out.clear()
        try:
            sent = self.transport.calls.send(data)
        except BlockingIOError:
            return self._stopped_short(memoryview(data))
        except OSError as exc:
            self._sending = memoryview(data)
            raise self._gone(exc) from exc
        self.bytes_sent += sent
        if sent == len(data):
            return True
        return self._send_rest(memoryview(data)[sent:])

    def _send_rest(self, sending: memoryview) -> bool:
        """`send_queued_nowait` from the unsent rest of a write on."""
        out = self._out
        calls = self.transport.calls
        while True:
            if not sending:
                if not out:
                    # Drop the view (even empty, a slice holds its buffer), or it keeps
                    # the last buffer alive while idle.
                    self._sending = _NOTHING
                    return True
                sending = memoryview(b"".join(out))
                out.clear()
            try:
                sent = calls.send(sending)
            except BlockingIOError:
                return self._stopped_short(sending)
            except OSError as exc:
                self._sending = sending
                raise self._gone(exc) from exc
            self.bytes_sent += sent
            sending = sending[sent:]  # (all sent: empty, and dropped above)

    def _stopped_short(self, sending: memoryview) -> bool:
        self._sending = sending
        return False

    def discard_queued(self) -> None:
        """Forget what is queued; only for bytes none of which has been sent."""
        self._out.clear()
        self._sending = _NOTHING

    async def send_all(self, data: bytes, timeout_s: float) -> None:
        """Send raw bytes outside h11 (a tunnel's payload)."""
        self._out.append(data)
        await self.send_queued(timeout_s)

    def send_eof(self) -> None:
        try:
            self.transport.shutdown_write()
        except OSError as exc:
            raise self._gone(exc) from exc

    # --- Reading -----------------------------------------------------------------------------

    async def recv(self, timeout_s: float) -> bytes:
        """Read once (up to RECEIVE_SIZE); b"" is EOF. Not fed to h11: the caller does, at
        once, in as many slices as it likes."""
        if checkpoint_due():  # (`checkpoint_if_cancelled`, its coroutine only if due)
            await checkpoint_if_cancelled()
        data = self._read_nowait()  # (`recv_if_ready`, inline: one coroutine less a read)
        if data is None:  # (waiting outside any handler: an idle wait holds no traceback)
            return await self._recv_after_waiting(timeout_s)
        await cancel_shielded_checkpoint()  # fairness: the bytes are recorded, now yield
        return data

    async def recv_if_ready(self) -> bytes | None:
        """Read once if bytes (or an EOF) are there already; None if a read would wait."""
        task = RUN_CONTEXT.task  # (`checkpoint_due`, inline: twice a request, a call less)
        if task._cancel_status.effectively_cancelled or RUN_CONTEXT.runner.ki_pending:
            await checkpoint_if_cancelled()
        else:
            task._cancel_points += 1
        try:
            data = self.transport.calls.recv(RECEIVE_SIZE)
        except BlockingIOError:
            return None
        except OSError as exc:
            raise self._gone(exc) from exc
        self.bytes_received += len(data)
        await SHIELDED_YIELD(SHIELDED)  # fairness: the bytes are recorded, now yield
        return data

    def recv_if_spun(self) -> bytes | None:
        """Read once if this wire's socket becomes readable within busy polling's window
        while the loop has nothing else to do (`_busypoll.spin_until_readable`); None
        otherwise (then wait as usual). Not a coroutine: no checkpoint, and none needed,
        since the poll found nothing else to run (and a due cancellation skips it)."""
        transport = self.transport
        if type(transport) is not SocketTransport:
            return None  # (no socket of its own to poll: memory, or faults in between)
        fd = transport.calls.fileno()
        # (A cancelled task's wait raises at once: no poll first, nor after one.)
        if fd < 0 or checkpoint_due() or not spin_until_readable(fd) or checkpoint_due():
            return None
        return self._read_nowait()

    async def recv_after_wait(self, timeout_s: float) -> bytes:
        """Read once, just after waiting for readability (the wait was the yield)."""
        if checkpoint_due():  # (`checkpoint_if_cancelled`, its coroutine only if due)
            await checkpoint_if_cancelled()
        data = self._read_nowait()  # (here, not in a coroutine of its own: one less a read)
        if data is None:  # woken, yet nothing to read after all: wait again
            return await self._recv_after_waiting(timeout_s)
        return data

    async def _recv_after_waiting(self, timeout_s: float) -> bytes:
        wait = self.transport.wait_readable
        while True:
            await self._wait(wait, timeout_s, self.receive_floor, "receiving")
            data = self._read_nowait()
            if data is not None:
                return data  # the wait was the yield

    def _read_nowait(self) -> bytes | None:
        """Read once if a read would not wait, and record it (no checkpoint in between)."""
        try:
            data = self.transport.calls.recv(RECEIVE_SIZE)
        except BlockingIOError:
            return None
        except OSError as exc:
            raise self._gone(exc) from exc
        self.bytes_received += len(data)
        return data

    async def wait_readable(self) -> None:
        """Wait, with no deadline of its own, until a read would not block."""
        try:
            await self.transport.wait_readable()
        except (trio.ClosedResourceError, OSError) as exc:
            raise self._gone(exc) from exc

    async def wait_readable_or_woken(self, waits: Wakes, at: float) -> bool:
        """Wait, with no deadline or cancel scope of its own, until a read would not block
        (True) or ``waits`` wakes this wire at ``at`` (False; nothing read, nothing closed).
        The wire's entry there is gone however the wait ends."""
        waits.add(self, at)
        try:
            await self.transport.wait_readable()
        except (trio.ClosedResourceError, OSError) as exc:
            if waits.discard(self):  # not woken: closed by another task, or broken
                raise self._gone(exc) from exc
            return False
        except BaseException:
            waits.discard(self)
            raise
        waits.discard(self)  # (readable: if it was woken just now too, that changes nothing)
        return True

    def readable_now(self) -> bool:
        """Whether a read would not block: bytes, an EOF or an error wait (nothing is read)."""
        return self.transport.readable_now()

    def peer_closed(self) -> bool:
        """Whether the peer has closed or reset the connection, checked without waiting;
        bytes it sent meanwhile (a pipelined request) stay unread and say it has not."""
        return self.transport.peer_closed()

    # --- Waiting -----------------------------------------------------------------------------

    async def _wait(
        self,
        wait: Callable[[], Awaitable[None]],
        timeout_s: float,
        floor: RateFloor | None,
        doing: str,
    ) -> None:
        now = self.clock.current_time()
        deadline = now + timeout_s
        if floor is not None:
            transferred = self.bytes_sent if doing == "sending" else self.bytes_received
            deadline = min(deadline, floor_deadline(floor, transferred))
        if deadline == math.inf:  # the caller's own scope bounds it: no second scope
            try:
                await wait()
            except (trio.ClosedResourceError, OSError) as exc:
                raise self._gone(exc) from exc
            return
        with trio.CancelScope(deadline=deadline) as scope:
            try:
                await wait()
            except (trio.ClosedResourceError, OSError) as exc:  # closed by another task
                raise self._gone(exc) from exc
        if scope.cancelled_caught:
            raise self._too_slow(doing)

    # --- Closing -----------------------------------------------------------------------------

    async def linger(self, seconds: float, max_bytes: int) -> None:
        """Close gently after answering a peer that may still be sending: half-close, then
        read and drop what it sends, for a moment (nginx's lingering_close). Closing at once
        with its bytes unread makes the kernel send a reset, which can destroy the answer
        before the peer reads it."""
        with trio.move_on_after(seconds), contextlib.suppress(ClientGone, ProxyError):
            self.send_eof()
            received = 0
            while received < max_bytes and (data := await self.recv(math.inf)):
                received += len(data)

    def drop_arrived(self, max_bytes: int) -> None:
        """Read and drop what the peer has sent already, without waiting, before a close
        with no linger: closing with bytes unread sends a reset, which can destroy the
        answer before the peer reads it. Synchronous, so no task runs in between; on TCP a
        byte the kernel takes after it still meets a reset (only a linger rules that out)."""
        with contextlib.suppress(OSError):
            received = 0
            while received < max_bytes and (data := self.transport.read_nowait(RECEIVE_SIZE)):
                received += len(data)
                self.bytes_received += len(data)

    def close(self) -> None:
        """Close at once (synchronously, so it is safe in ``finally`` under cancellation)."""
        self.transport.close()

    @property
    def closed(self) -> bool:
        return self.transport.closed

    def _gone(self, exc: BaseException) -> Exception:
        raise NotImplementedError

    def _too_slow(self, doing: str) -> Exception:
        raise NotImplementedError


class Peer(Wire):
    """A wire with its HTTP/1.1 state machine: h11 events are queued as bytes, then flushed."""

    __slots__ = ("h11",)

    def __init__(self, transport: Transport, conn: h11.Connection) -> None:
        super().__init__(transport)
        self.h11 = conn

    def queue(self, event: h11.Event) -> None:
        try:
            data = self.h11.send(event)
        except h11.LocalProtocolError as exc:
            # h11's parser took something its writer will not send (the other side's
            # message, which is all we forward): that message cannot be forwarded.
            raise self._unsendable(exc) from exc
        if data:
            self._out.append(data)

    def queue_sized(self, event: h11.Event) -> int:
        """`queue`, saying how many bytes it queued: a response head's end is where the
        head started plus that, without asking for `queued_bytes` a second time."""
        try:
            data = self.h11.send(event)
        except h11.LocalProtocolError as exc:
            raise self._unsendable(exc) from exc  # (as in `queue`)
        if data:
            self._out.append(data)
            return len(data)
        return 0

    def flush(self, timeout_s: float) -> Awaitable[object]:
        """Send everything queued; an error or a cancellation leaves this h11 side unusable
        (the peer got an unknown prefix). Await what it returns (its value means nothing).

        Not a coroutine: every request flushes twice, and in the usual case (everything
        goes out in one write) what it returns is the fairness yield's trap itself, so no
        frame of ours waits in the chain; anything else is `_flush`, a coroutine."""
        out = self._out
        if not out or self._sending:  # nothing queued, or the rest of a write goes first
            return self._flush(timeout_s)
        # (`send_queued`, inline: `checkpoint_due`, then `send_queued_nowait`'s usual case.)
        task = RUN_CONTEXT.task
        if task._cancel_status.effectively_cancelled or RUN_CONTEXT.runner.ki_pending:
            return self._flush(timeout_s)  # (it awaits the cancellation)
        task._cancel_points += 1
        data = b"".join(out)  # (one part: no copy)
        out.clear()
        return self._write_at_once(data, timeout_s)

    def send_message(self, head: h11.Event, timeout_s: float) -> Awaitable[object]:
        """Queue a message that has no body, its head and its end, and `flush`: a request
        without a body, in one call, and with nothing queued before it (the usual case) sent
        as h11 made it, with no list to join."""
        conn = self.h11
        try:
            # (h11 says None only for ConnectionClosed, which is no head.)
            data: bytes = conn.send(head)  # type: ignore[assignment]
            end = conn.send(END_OF_MESSAGE)  # (b"" unless its framing has an end)
        except h11.LocalProtocolError as exc:
            raise self._unsendable(exc) from exc  # (as in `queue`)
        if end:
            data += end
        task = RUN_CONTEXT.task
        if (
            self._out
            or self._sending
            or task._cancel_status.effectively_cancelled
            or RUN_CONTEXT.runner.ki_pending
        ):
            self._out.append(data)
            return self._flush(timeout_s)  # (in order, or it awaits the cancellation)
        task._cancel_points += 1  # (`flush`'s `checkpoint_due`, inline)
        return self._write_at_once(data, timeout_s)

    def _write_at_once(self, data: bytes, timeout_s: float) -> Awaitable[object]:
        """`flush` from the write of ``data`` (taken off the queue, the cancellation checked
        just before) on: records what was sent before anything else can happen, then
        returns the fairness yield, or `_flush_waiting` if not all of it went at once."""
        try:
            sent = self.transport.calls.send(data)
            self.bytes_sent += sent
            if sent != len(data) and not self._send_rest(memoryview(data)[sent:]):
                return self._flush_waiting(timeout_s)
        except BlockingIOError:
            self._sending = memoryview(data)
            return self._flush_waiting(timeout_s)
        except OSError as exc:
            self._sending = memoryview(data)
            self.h11.send_failed()
            raise self._gone(exc) from exc
        except BaseException:  # (`_send_rest`'s translated error)
            self.h11.send_failed()
            raise
        # (`may_skip_yield`'s first rule, inline: under load others are runnable.)
        if RUN_CONTEXT.runner.runq or not may_skip_yield():
            return SHIELDED_YIELD(SHIELDED)  # fairness: everything went out at once
        return _sent()

    async def _flush(self, timeout_s: float) -> None:
        """`flush` from the start, as a coroutine (`send_queued` with `send_failed`)."""
        if not self._out and not self._sending:
            return
        try:
            await self.send_queued(timeout_s)
        except BaseException:
            self.h11.send_failed()
            raise

    async def _flush_waiting(self, timeout_s: float) -> None:
        """The rest of `flush` once the transport took not everything at once."""
        try:
            await self._send_waiting(timeout_s)
        except BaseException:
            self.h11.send_failed()
            raise

    def _unsendable(self, exc: h11.LocalProtocolError) -> Exception:
        raise NotImplementedError

    def __repr__(self) -> str:
        ours, theirs = self.h11.our_state.__name__, self.h11.their_state.__name__
        state = "closed" if self.closed else f"ours {ours}, theirs {theirs}"
        return (
            f"<{type(self).__name__} [{self._name()} | {state} | sent {self.bytes_sent}, "
            f"received {self.bytes_received}, queued {self.queued_bytes} bytes]>"
        )

    def _name(self) -> str:
        raise NotImplementedError


async def _sent() -> None:
    """What `flush` returns when it sent everything and may skip the fairness yield: done at
    once. (A coroutine, not a generator made awaitable: compiled, only a coroutine is.)"""


def server_h11(limits: Limits) -> h11.Connection:
    """A new server state machine for a client connection between requests (both sides
    IDLE, so it knows nothing the old one did not): the one recipe for every machine a
    `Downstream` gets, its first, after skipped empty lines, and a taken-back response's."""
    return h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_header_bytes)


class Downstream(Peer):
    """The client's connection; ``h11`` is in the SERVER role."""

    __slots__ = ("closing", "peer_ip")

    def __init__(self, transport: Transport, conn: h11.Connection) -> None:
        super().__init__(transport, conn)
        self.peer_ip = transport.peer_ip
        self.closing = False  # the current response is the connection's last

    def _name(self) -> str:
        return f"client {self.peer_ip}" + (", closing" if self.closing else "")

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

    __slots__ = (
        "address",
        "answer_until",
        "connected_at",
        "detached",
        "idle_since",
        "sockaddr",
        "uses",
    )

    def __init__(
        self,
        transport: Transport,
        conn: h11.Connection,
        address: str,
        sockaddr: object = None,
    ) -> None:
        super().__init__(transport, conn)
        self.address = address
        self.sockaddr = sockaddr  # as the resolver gave it: retired when it leaves the answer
        # Until when ``sockaddr`` is known to be in the resolver's answer (the pool's note:
        # `UpstreamPool._still_current`); nothing known yet.
        self.answer_until = -math.inf
        self.connected_at = self.clock.current_time()
        self.idle_since = 0.0
        self.uses = 0
        self.detached = False  # no longer counted by the pool (a tunnel)

    def _name(self) -> str:
        return f"{self.address}, use {self.uses}" + (", detached" if self.detached else "")

    @property
    def reusable(self) -> bool:
        # Bytes past the response's framing (a body on a HEAD or 304, a short Content-Length,
        # a second response) are already in h11's buffer, out of poll()'s sight: a
        # connection holding any would answer the next client's request with them.
        conn = self.h11
        return (
            conn.our_state is _DONE
            and conn.their_state is _DONE
            and not self._out  # (`has_queued`, inline: every release asks)
            and not self._sending
            and conn.trailing_data == (b"", False)
        )

    def failure(self, early: str, late: str) -> UpstreamError:
        """The error for this connection ending or failing: `UpstreamClosed` (message
        ``early``) while no response byte has arrived, the stale keep-alive race on a reused
        connection, which the exchange retries (`_exchange`); else `UpstreamError` (``late``)."""
        if self.bytes_received == 0:
            return UpstreamClosed(early)
        return UpstreamError(late)

    def _gone(self, exc: BaseException) -> Exception:
        return self.failure(
            f"upstream {self.address} closed the connection: {exc}",
            f"upstream {self.address} connection lost: {exc}",
        )

    def _too_slow(self, doing: str) -> Exception:
        return UpstreamTimeout(f"upstream {self.address} timed out {doing}")

    def _unsendable(self, exc: h11.LocalProtocolError) -> Exception:
        return ClientError(f"request cannot be forwarded: {exc}")
