"""Upstream keep-alive connections: reused while fresh, bounded while idle.

The model is nginx's ``keepalive N``: ``size`` bounds the *idle* connections kept for reuse,
not the busy ones. A busy connection belongs to one client connection, which holds at most
one, so the client connection limit bounds them; a client that holds its connection (a slow
body, an unread response) therefore never takes one from anybody else. An operator who must
also cap busy connections sets ``max_connections`` (nginx's ``max_conns``): requests beyond it
wait ``wait_timeout_s`` for a slot, and then attackers who outnumber the cap do win it.

State changes are synchronous (take, put back, discard), so cancellation at any await can
never leave the pool counting a connection that is gone; the only awaits are the name
resolution, the connect and the wait for a slot, all under deadlines. ``run`` lives in the
server's nursery: it hosts the resolver's lookups and closes expired idle connections.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from ..core._addr import format_host_port
from ..core._errors import OutOfSockets, PoolTimeout, UpstreamConnectError, UpstreamTimeout
from ._breakerhook import NextHopBreaker
from ._h11 import h11
from ._peer import UpstreamConnection
from ._resolver import Resolver, SockAddr
from ._transport import Transport, connect_socket

log = logging.getLogger("trioproxy")

# Opens a connection to (family, sockaddr): a socket's, or a memory network's in tests.
Connector = Callable[[int, object], Awaitable[Transport]]
# Out of a resource, not "this address refuses": no use trying the next address.
_OUT_OF_DESCRIPTORS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


@dataclass(frozen=True, slots=True)
class PoolLimits:
    size: int = 256  # idle connections kept
    idle_timeout_s: float = 4.0
    connect_timeout_s: float = 60.0
    wait_timeout_s: float = 10.0
    max_response_head_bytes: int = 65536
    max_connections: int = 0  # all connections, busy included; 0: no cap
    max_age_s: float = 300.0
    breaker_failures: int = 5  # connect failures in a row that open the breaker; 0: off
    breaker_cooldown_s: float = 10.0


@dataclass(slots=True)
class PoolStats:
    opened: int = 0
    reused: int = 0
    discarded: int = 0
    expired: int = 0
    waited: int = 0


class UpstreamPool:
    def __init__(
        self, resolver: Resolver, limits: PoolLimits, connect: Connector = connect_socket
    ) -> None:
        self.resolver = resolver
        self._connect_transport = connect
        self.limits = limits
        self.stats = PoolStats()
        self._idle: list[UpstreamConnection] = []  # most recently used last
        self._open = 0  # idle + in use + connecting
        self._slot_freed = trio.lowlevel.ParkingLot()
        self._parked = 0  # tasks in `_slot_freed` (its own truth test is a Python call)
        self._closed = False
        self.breaker = NextHopBreaker(format_host_port(resolver.host, resolver.port))

    @property
    def open_count(self) -> int:
        return self._open

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    @property
    def waiting_count(self) -> int:
        return len(self._slot_freed)

    def __repr__(self) -> str:
        # httpcore's shape. A request holds one connection (in use or connecting), so the
        # active counts are equal; queued requests wait for a slot (``max_connections``).
        active = self._open - len(self._idle)
        return (
            f"<UpstreamPool [requests: {active} active, {self.waiting_count} queued | "
            f"connections: {active} active, {len(self._idle)} idle]>"
        )

    def reuse(self, now: float | None = None) -> UpstreamConnection | None:
        """`acquire`'s usual case, with no coroutine made for it: the most recently used
        idle connection that is alive, young enough and still in the resolver's answer
        (`release` asks the last two as well), taken for one exchange; None if there is
        none (then `acquire`, which waits or connects). ``now``: as for `acquire`."""
        # One clock reading serves every check of the idle connections.
        if now is None:
            now = trio.current_time()
        idle = self._idle
        if idle and idle[0].idle_since <= now - self.limits.idle_timeout_s:  # (rarely)
            self._expire_idle(now)
        while idle:
            conn = idle.pop()
            if (
                # An idle connection with something to read was closed (or broken) by the
                # origin: an EOF, a reset, or bytes nobody asked for.
                conn.transport.readable_now()
                or now - conn.connected_at >= self.limits.max_age_s
                or (now >= conn.answer_until and not self._still_current(conn, now))
            ):
                self._close_idle(conn)
                continue
            conn.bytes_received = 0
            conn.uses += 1
            self.stats.reused += 1
            if log.isEnabledFor(logging.DEBUG):  # (log.debug's own test, one call less)
                log.debug(
                    "pool: reusing the connection to %s (use %d): %r", conn.address, conn.uses, self
                )
            return conn
        return None

    async def acquire(self, now: float | None = None) -> tuple[UpstreamConnection, bool, bool]:
        """A connection for one exchange, whether it was reused from the pool, and whether
        the request had to wait for a slot (its client may have left meanwhile). ``now``:
        the caller's reading of the clock, if it was taken just before."""
        # One clock reading serves the deadline and every check of the idle connections.
        if now is None:
            now = trio.current_time()
        waited = False
        while True:
            conn = self.reuse(now)
            if conn is not None:
                return conn, True, waited
            if self._has_room():
                return await self._open_new(), False, waited
            self.stats.waited += 1
            if not waited:
                deadline = now + self.limits.wait_timeout_s
                waited = True
            self._parked += 1
            try:
                with trio.move_on_at(deadline) as scope:
                    await self._slot_freed.park()
            finally:
                self._parked -= 1
            # (No `continue` inside the `with`: mypyc cannot compile one in a try/finally.)
            if scope.cancelled_caught:
                raise PoolTimeout(f"all {self.limits.max_connections} upstream connections busy")
            now = trio.current_time()

    async def connect_fresh(self) -> tuple[UpstreamConnection, bool]:
        """A new connection regardless of idle ones (the stale-connection retry), and
        whether it is a reused one after all (at the cap, the next free one is taken)."""
        while not self._has_room() and self._idle:
            self._close_idle(self._idle.pop(0))
        if not self._has_room():
            conn, reused, _ = await self.acquire()
            return conn, reused
        return await self._open_new(), False

    def release(self, conn: UpstreamConnection, now: float | None = None) -> None:
        """Return a connection after an exchange; kept only if both sides finished cleanly,
        it is not too old, its address is still in the answer and there is idle room.
        ``now``: the caller's reading of the clock, if it has one."""
        if now is None:
            now = conn.clock.current_time()
        # (Inline, with what `_keep_idle` does: every exchange ends here.)
        if (
            self._closed
            or not conn.reusable
            or now - conn.connected_at >= self.limits.max_age_s
            or (now >= conn.answer_until and not self._still_current(conn, now))
        ):
            self.discard(conn)
            return
        conn.h11.start_next_cycle()
        conn.idle_since = now
        idle = self._idle
        idle.append(conn)
        if len(idle) > self.limits.size:
            self._close_idle(idle.pop(0))  # the longest idle goes
        if self._parked:  # (`_slot_was_freed`)
            self._slot_freed.unpark()

    def _keep_idle(self, conn: UpstreamConnection, now: float) -> None:
        conn.idle_since = now
        self._idle.append(conn)
        if len(self._idle) > self.limits.size:
            self._close_idle(self._idle.pop(0))  # the longest idle goes
        self._slot_was_freed()

    def give_back(self, conn: UpstreamConnection) -> None:
        """Return a connection that was taken but never used (its client left first)."""
        if self._closed or conn.h11.our_state is not h11.IDLE or conn.has_queued:
            self.discard(conn)
            return
        self._keep_idle(conn, conn.clock.current_time())

    def discard(self, conn: UpstreamConnection) -> None:
        conn.close()
        self.stats.discarded += 1
        if not conn.detached:
            self._open -= 1
            self._slot_was_freed()

    def detach(self, conn: UpstreamConnection) -> None:
        """Take a connection out of the pool's count for good (a WebSocket tunnel): long-lived
        tunnels must not use up the connections ordinary requests wait for."""
        if not conn.detached:
            conn.detached = True
            self._open -= 1
            self._slot_was_freed()

    def close(self) -> None:
        self._closed = True
        while self._idle:
            self._close_idle(self._idle.pop())

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Host the resolver's lookups and close expired idle connections; lives in the
        server's nursery until cancelled."""
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.resolver.run)
                task_status.started()
                while True:
                    await trio.sleep(self.limits.idle_timeout_s / 2)
                    self._expire_idle(trio.current_time())
        finally:
            self.close()

    def _slot_was_freed(self) -> None:
        # Nobody waits for a slot without `max_connections`: trio's unpark would still cost
        # a generator and a list on every release.
        if self._parked:
            self._slot_freed.unpark()

    def _still_current(self, conn: UpstreamConnection, now: float) -> bool:
        """Whether ``conn``'s address is still in the resolver's answer, and if so noted on
        ``conn`` until that answer expires: it cannot change before (no lookup starts), so
        until then `acquire` and `release` need not ask (`conn.answer_until`)."""
        resolver = self.resolver
        if not resolver.still_current(conn.sockaddr, now):
            return False
        conn.answer_until = resolver.expires_at
        return True

    def _has_room(self) -> bool:
        return not self.limits.max_connections or self._open < self.limits.max_connections

    def _expire_idle(self, now: float) -> None:
        cutoff = now - self.limits.idle_timeout_s
        expired = 0
        while self._idle and self._idle[0].idle_since <= cutoff:
            self._close_idle(self._idle.pop(0))
            expired += 1
        self.stats.expired += expired

    def _close_idle(self, conn: UpstreamConnection) -> None:
        conn.close()
        self._open -= 1
        self._slot_was_freed()

    async def _open_new(self) -> UpstreamConnection:
        # The name is resolved before a slot is taken: a slow resolver holds no slot.
        deadline = trio.current_time() + self.limits.connect_timeout_s
        addresses = await self.resolver.resolve(deadline)
        if not self._has_room():  # taken while we resolved
            conn, _, _ = await self.acquire()
            return conn
        self.breaker.admit(self.limits)  # while the next hop refuses: 503 at once
        self._open += 1
        try:
            conn = await self._connect(addresses, deadline)
        except BaseException as exc:
            self._open -= 1
            self._slot_was_freed()
            self.breaker.record(self.limits, exc)
            raise
        self.breaker.record(self.limits, None)
        self.stats.opened += 1
        conn.uses = 1
        log.debug("pool: new connection to %s: %r", conn.address, self)
        return conn

    async def _connect(self, addresses: list[SockAddr], deadline: float) -> UpstreamConnection:
        errors: list[str] = []
        for family, sockaddr in addresses:
            address = format_host_port(sockaddr[0], sockaddr[1])
            try:
                with trio.fail_at(deadline):
                    transport = await self._connect_transport(family, sockaddr)
            except trio.TooSlowError:
                raise UpstreamTimeout(f"connect to upstream {address} timed out") from None
            except OSError as exc:
                if exc.errno in _OUT_OF_DESCRIPTORS:
                    raise OutOfSockets(f"cannot open a socket: {exc}") from exc
                errors.append(f"{address}: {os.strerror(exc.errno) if exc.errno else exc}")
                continue
            conn = h11.Connection(
                h11.CLIENT, max_incomplete_event_size=self.limits.max_response_head_bytes
            )
            return UpstreamConnection(transport, conn, address, sockaddr)
        if len(errors) == 1:  # the address says it all (the name is on the line's context)
            raise UpstreamConnectError(f"cannot connect to upstream {errors[0]}")
        reason = "; ".join(errors) or "no address"
        raise UpstreamConnectError(f"cannot connect to upstream {self.resolver.host}: {reason}")
