"""Faults carried out on one exchange, at the seams `_exchange` calls (a `FaultRun`).

Which faults apply was decided before (the rules' ``fault`` and the runtime table, in
`_exchange._rules`); this module only acts, at each point, in each direction:

- before forwarding (client only): ``answer`` instead of asking the origin, ``informational``
  1xx first, ``malformed`` bytes then close;
- before a head, after it: ``latency``, ``hang``, ``reset``, ``malformed`` (after the client's
  head: garbage for its body), in either direction where the kind allows;
- in the body: a `FaultyTransport` under the peer's wire from the end of the head on
  (``latency`` per write, ``bandwidth``, ``reset``/``truncate``/``hang`` at byte
  ``after_bytes`` of what follows the head, as sent: a chunked body's framing counts);
- after the response: ``close_after`` ends the client connection though its response did not
  say ``Connection: close``.

An exchange without faults never reaches this module (`Exchange.faults` is None). A fault
that ends the exchange raises what the equivalent peer behaviour would: the client's
connection reset or closed (`ClientGone`), the origin's (a 502 for the client).
"""

from __future__ import annotations

import errno
import math
import socket
import struct
from collections.abc import Callable, Iterator

import trio

from ..core._answers import text_response
from ..core._chunked import ChunkedChecker
from ..core._errors import ClientGone, UpstreamError
from ..core._faults import Direction, FaultKind, FaultState, Point
from ..core._headers import header_value
from ..core._rulemodel import Response
from ..core._strict import FramingError
from ._h11 import h11
from ._nowaitcalls import NowaitCalls
from ._peer import Downstream, UpstreamConnection, Wire
from ._transport import Transport

__all__ = ["HANG_S", "FaultClosed", "FaultRun", "FaultyTransport", "pause", "read_whole"]

# A hang ends when the client leaves, or after this (every wait has a deadline): longer than
# any test waits, and nothing under the autojump clock.
HANG_S = 86_400.0
_BODY_KINDS = frozenset(
    {FaultKind.LATENCY, FaultKind.BANDWIDTH, FaultKind.RESET, FaultKind.TRUNCATE, FaultKind.HANG}
)


class FaultRun:
    """The faults selected for one exchange, in rule order (rules first, then runtime ones)."""

    __slots__ = ("states",)

    def __init__(self, states: tuple[FaultState, ...]) -> None:
        self.states = states

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(state.fault.label for state in self.states)

    def _at(self, direction: Direction, point: Point) -> Iterator[FaultState]:
        for state in self.states:
            if state.fault.direction is direction and state.fault.point is point:
                yield state

    # --- Before forwarding (client) ------------------------------------------------------

    def answer(self) -> Response | None:
        """The answer an ``answer`` fault gives instead of the origin's, if one applies."""
        for state in self._at(Direction.CLIENT, Point.BEFORE_HEAD):
            fault = state.fault
            if fault.kind is FaultKind.ANSWER:
                extra = (
                    ()
                    if fault.retry_after_s is None
                    else ((b"Retry-After", b"%d" % fault.retry_after_s),)
                )
                return text_response(fault.status, extra, fault.body)
        return None

    async def before_forwarding(self, down: Downstream, send_timeout_s: float) -> None:
        """1xx responses first; malformed bytes instead of any response (then `ClientGone`)."""
        for state in self._at(Direction.CLIENT, Point.BEFORE_HEAD):
            fault = state.fault
            if fault.kind is FaultKind.INFORMATIONAL:
                down.queue(h11.InformationalResponse(status_code=fault.status, headers=[]))
                await down.flush(send_timeout_s)
            elif fault.kind is FaultKind.MALFORMED:
                await _garbage_then_close(down, fault.garbage, send_timeout_s)

    # --- Around a head -------------------------------------------------------------------

    async def before_head(
        self,
        direction: Direction,
        down: Downstream,
        peer: Wire,
        let_go: Callable[[], None] | None = None,
    ) -> None:
        """Before the head goes to ``peer`` (the client, or the origin's connection).
        ``let_go``: called before a hang toward the client, which relays nothing more, so
        that it holds no upstream connection (one under ``upstream.max_connections``, and
        the origin's). (Toward the origin a held connection is the fault itself.)"""
        await self._act(direction, Point.BEFORE_HEAD, down, peer, let_go)

    async def after_head(
        self,
        direction: Direction,
        down: Downstream,
        peer: Wire,
        send_timeout_s: float,
        let_go: Callable[[], None] | None = None,
    ) -> None:
        """Once the head has gone to ``peer``; then its body faults start (`FaultyTransport`).
        ``let_go``: as `before_head`'s."""
        if any(self._at(direction, Point.AFTER_HEAD)):
            if isinstance(peer, (Downstream, UpstreamConnection)):
                await peer.flush(send_timeout_s)
            await self._act(direction, Point.AFTER_HEAD, down, peer, let_go, send_timeout_s)
        body = [s for s in self._at(direction, Point.BODY) if s.fault.kind in _BODY_KINDS]
        if body:
            peer.transport = FaultyTransport(peer.transport, body, skip=peer.queued_bytes)

    async def _act(
        self,
        direction: Direction,
        point: Point,
        down: Downstream,
        peer: Wire,
        let_go: Callable[[], None] | None,
        send_timeout_s: float = 0.0,
    ) -> None:
        for state in self._at(direction, point):
            kind = state.fault.kind
            if kind is FaultKind.LATENCY:
                await pause(down, state.sample_delay_s())
            elif kind is FaultKind.HANG:
                if let_go is not None:
                    let_go()
                await pause(down, HANG_S)
                raise FaultClosed("fault: hung until the client left")
            elif kind is FaultKind.RESET:
                reset(peer.transport)
                raise _ended(peer, f"fault {state.fault.label}: connection reset")
            elif kind is FaultKind.MALFORMED and isinstance(peer, Downstream):
                await _garbage_then_close(peer, state.fault.garbage, send_timeout_s)

    def head_delay_s(self, direction: Direction) -> float | None:
        """The delay of the latencies before the head toward ``direction`` when nothing else
        acts at that head (before or after it), sampled now; else None. Such a delay may come
        later, just before the head goes: once the response was read whole and its upstream
        connection went back to the pool, a delayed client holds none."""
        at_head = [
            s
            for s in self.states
            if s.fault.direction is direction
            and s.fault.point in (Point.BEFORE_HEAD, Point.AFTER_HEAD)
            and s.fault.kind is not FaultKind.INFORMATIONAL  # (sent before forwarding)
        ]
        if not at_head or any(s.fault.kind is not FaultKind.LATENCY for s in at_head):
            return None
        return sum(s.sample_delay_s() for s in at_head)  # in rule order, as `_act` samples

    # --- After the response ------------------------------------------------------------------

    def paces(self, direction: Direction) -> bool:
        """Whether this exchange's own faults slow its body towards ``direction`` (then the
        proxy's rate floor, meant for slow peers, must not judge the fault)."""
        return any(
            s.fault.direction is direction
            and s.fault.point is Point.BODY
            and s.fault.kind in (FaultKind.LATENCY, FaultKind.BANDWIDTH, FaultKind.HANG)
            for s in self.states
        )

    def close_after(self) -> bool:
        return any(s.fault.kind is FaultKind.CLOSE_AFTER for s in self.states)

    @staticmethod
    def restore(peer: Wire) -> None:
        """The peer's own transport again (after its body, however the exchange ended)."""
        if isinstance(peer.transport, FaultyTransport):
            peer.transport = peer.transport.inner


class FaultClosed(ClientGone):
    """A fault ended the client's connection: no response, or part of one (logged as 444,
    nginx's "closed without a response", when no status went out)."""


def _ended(peer: Wire, message: str) -> Exception:
    if isinstance(peer, UpstreamConnection):
        return UpstreamError(f"upstream {peer.address}: {message}")
    return FaultClosed(message)


async def read_whole(
    up: UpstreamConnection,
    response: h11.Response,
    received: bytearray,
    *,
    method: bytes,
    limit: int,
    timeout_s: float,
) -> bool:
    """Read the response body ahead into ``up``'s h11 (and onto ``received``, which the
    relay's strict chunked check still sees), until it is whole (True) or over ``limit``
    bytes (False: it streams, and holds its connection while it does)."""
    chunks = ChunkedChecker() if header_value(response.headers, b"transfer-encoding") else None
    length = header_value(response.headers, b"content-length")
    if method == b"HEAD" or response.status_code in (204, 304):
        return True
    fresh: bytes | bytearray = received
    while True:
        try:
            if chunks is not None:
                chunks.feed(fresh)
                if chunks.done:
                    return True
            elif length and len(received) >= int(length):
                return True
        except (FramingError, ValueError):
            return True  # the relay reports it, on what was read
        if len(received) > limit:
            return False
        data = await up.recv(timeout_s)
        up.h11.receive_data(data)  # recorded before any checkpoint: nothing read is lost
        if not data:
            return True  # the end of file: whole (close-delimited), or cut (the relay says)
        received += data
        fresh = data


async def pause(down: Downstream, seconds: float) -> None:
    """Wait ``seconds``, or until the client leaves (then `FaultClosed`: nobody to delay)."""
    with trio.move_on_after(seconds):
        await down.wait_readable()
        # Bytes came instead of a close (a body, a pipelined request): readiness can no longer
        # tell a close, so look again now and then, less and less often.
        look_s = 0.5
        while not down.peer_closed():
            await trio.sleep(look_s)
            look_s = min(look_s * 2, 60.0)
        raise FaultClosed("fault: the client left while the fault held its answer")


async def _garbage_then_close(down: Downstream, garbage: bytes, send_timeout_s: float) -> None:
    await down.flush(send_timeout_s)
    await down.send_all(garbage, send_timeout_s)
    raise FaultClosed("fault: sent malformed bytes, then closed")


def reset(transport: Transport) -> None:
    """Close ``transport`` with a TCP reset (SO_LINGER 0 for a socket; the memory transport's
    own reset), so the peer's next read fails instead of seeing an EOF."""
    inner = transport.inner if isinstance(transport, FaultyTransport) else transport
    own = getattr(inner, "reset", None)
    if own is not None:
        own()
        return
    sock = getattr(inner, "socket", None)
    if sock is not None and not inner.closed:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    inner.close()


class FaultyTransport(NowaitCalls):
    """A transport whose writes after the first ``skip`` bytes (the head) carry out body
    faults: paced (``bandwidth``), delayed (``latency`` before each write), cut at a byte
    (``reset``, ``truncate``, ``hang``). Reads pass through."""

    __slots__ = ("_cut", "_faults", "_ready_at", "_started", "_written", "inner", "skip")

    def __init__(self, inner: Transport, faults: list[FaultState], *, skip: int) -> None:
        self.inner = inner
        self.skip = skip  # bytes to pass before the body starts
        self._faults = faults
        self._written = 0  # every byte written through this wrapper
        self._started = -1.0  # when the first body byte could go (bandwidth's origin)
        self._ready_at = 0.0  # no body write before this (latency, bandwidth)
        cuts = [s for s in faults if s.fault.kind in _CUT_KINDS]
        self._cut = min(cuts, key=lambda s: s.fault.after_bytes) if cuts else None

    # --- Reads and the rest: the inner transport's ------------------------------------------

    @property
    def peer_ip(self) -> str:
        return self.inner.peer_ip

    def read_nowait(self, max_bytes: int) -> bytes | None:
        return self.inner.read_nowait(max_bytes)

    async def wait_readable(self) -> None:
        await self.inner.wait_readable()

    def readable_now(self) -> bool:
        return self.inner.readable_now()

    def wake_waiters(self) -> None:
        self.inner.wake_waiters()

    def peer_closed(self) -> bool:
        return self.inner.peer_closed()

    def shutdown_write(self) -> None:
        self.inner.shutdown_write()

    def close(self) -> None:
        self.inner.close()

    @property
    def closed(self) -> bool:
        return self.inner.closed

    # --- Writes --------------------------------------------------------------------------

    def write_nowait(self, data: memoryview) -> int | None:
        allowed = self._allowed(len(data))
        if allowed is None:
            return None
        taken = self.inner.write_nowait(data[:allowed])
        if taken:
            self._wrote(taken)
        return taken

    async def wait_writable(self) -> None:
        if self._cut is not None and self._body_written >= self._cut.fault.after_bytes:
            await trio.sleep_forever()  # a hang (the others raised): the caller's deadline ends it
        if self._ready_at > trio.current_time():
            await trio.sleep_until(self._ready_at)
        await self.inner.wait_writable()

    @property
    def _body_written(self) -> int:
        return max(0, self._written - self.skip)

    def _allowed(self, wanted: int) -> int | None:
        """How many of ``wanted`` bytes may go now; None: none yet (wait_writable says when)."""
        head_left = self.skip - self._written
        if head_left > 0:
            return min(wanted, head_left)
        now = trio.current_time()
        if self._started < 0:
            self._started = now
            self._ready_at = max(self._ready_at, now + self._latency())
        if now < self._ready_at:
            return None
        allowed = wanted
        cut = self._cut
        if cut is not None:
            left = cut.fault.after_bytes - self._body_written
            if left <= 0:
                self._cut_now(cut)
                return None
            allowed = min(allowed, left)
        for state in self._faults:
            if state.fault.kind is FaultKind.BANDWIDTH:
                # A token bucket holding 50 ms of bytes: writes of a useful size at the
                # rate, not one byte per wake-up (a dribble of 20 kB/s would wake the writer
                # 20,000 times a second).
                rate = state.fault.bytes_per_s
                elapsed = now - self._started
                pace = math.floor(rate * elapsed) + max(1, rate // 20) - self._body_written
                if pace <= 0:
                    wait_s = state.bandwidth_wait_s(self._body_written, elapsed)
                    # (at least a byte's time, so that rounding never leaves it spinning)
                    self._ready_at = now + max(wait_s, 1 / rate)
                    return None
                allowed = min(allowed, pace)
        return allowed

    def _wrote(self, taken: int) -> None:
        before = self._body_written
        self._written += taken
        if self._body_written > before:  # a body write: the next one waits its latency
            self._ready_at = max(self._ready_at, trio.current_time() + self._latency())

    def _latency(self) -> float:
        return sum(s.sample_delay_s() for s in self._faults if s.fault.kind is FaultKind.LATENCY)

    def _cut_now(self, cut: FaultState) -> None:
        kind = cut.fault.kind
        if kind is FaultKind.RESET:
            reset(self.inner)
            raise ConnectionResetError(errno.ECONNRESET, f"fault {cut.fault.label}: reset")
        if kind is FaultKind.TRUNCATE:
            self.inner.shutdown_write()
            raise BrokenPipeError(errno.EPIPE, f"fault {cut.fault.label}: truncated")
        # HANG: nothing more is written; wait_writable waits for the caller's deadline


_CUT_KINDS = frozenset({FaultKind.RESET, FaultKind.TRUNCATE, FaultKind.HANG})
