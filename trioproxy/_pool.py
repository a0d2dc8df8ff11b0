"""A bounded pool of keep-alive connections to the upstream.

State changes are synchronous (take, put back, discard), so cancellation at any await can
never leave the pool counting a connection that is gone; the only awaits are the connect
and the wait for a free slot, both under deadlines. The pool's reaper task lives in the
server's nursery and closes idle connections before the origin's keep-alive drops them.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass

import trio

from ._addr import format_host_port
from ._errors import PoolTimeout, UpstreamConnectError, UpstreamTimeout
from ._h11 import h11
from ._peer import UpstreamConnection
from ._resolver import Resolver

log = logging.getLogger("trioproxy")


@dataclass(frozen=True, slots=True)
class PoolLimits:
    size: int = 256
    idle_timeout_s: float = 4.0
    connect_timeout_s: float = 60.0
    wait_timeout_s: float = 10.0
    max_response_head_bytes: int = 65536


@dataclass(slots=True)
class PoolStats:
    opened: int = 0
    reused: int = 0
    discarded: int = 0
    expired: int = 0
    waited: int = 0


class UpstreamPool:
    def __init__(self, resolver: Resolver, limits: PoolLimits) -> None:
        self.resolver = resolver
        self.limits = limits
        self.stats = PoolStats()
        self._idle: list[UpstreamConnection] = []  # most recently used last
        self._open = 0  # idle + in use + connecting: never above limits.size
        self._slot_freed = trio.lowlevel.ParkingLot()
        self._closed = False

    @property
    def open_count(self) -> int:
        return self._open

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    @property
    def waiting_count(self) -> int:
        return len(self._slot_freed)

    async def acquire(self) -> tuple[UpstreamConnection, bool]:
        """A connection for one exchange and whether it was reused from the pool."""
        deadline = trio.current_time() + self.limits.wait_timeout_s
        while True:
            conn = self._take_idle()
            if conn is not None:
                self.stats.reused += 1
                log.debug("pool: reusing the connection to %s (use %d)", conn.address, conn.uses)
                return conn, True
            if self._open < self.limits.size:
                return await self._open_new(), False
            self.stats.waited += 1
            with trio.move_on_at(deadline):
                await self._slot_freed.park()
                continue
            raise PoolTimeout(f"all {self.limits.size} upstream connections busy")

    async def connect_fresh(self) -> UpstreamConnection:
        """A new connection regardless of idle ones (the stale-connection retry)."""
        while self._open >= self.limits.size and self._idle:
            self._close_idle(self._idle.pop(0))
        if self._open >= self.limits.size:
            conn, _ = await self.acquire()
            return conn
        return await self._open_new()

    def release(self, conn: UpstreamConnection) -> None:
        """Return a connection after an exchange; kept only if both sides finished cleanly."""
        if self._closed or not conn.reusable:
            self.discard(conn)
            return
        conn.h11.start_next_cycle()
        conn.idle_since = trio.current_time()
        self._idle.append(conn)
        self._slot_freed.unpark()

    def discard(self, conn: UpstreamConnection) -> None:
        conn.close()
        self.stats.discarded += 1
        if not conn.detached:
            self._open -= 1
            self._slot_freed.unpark()

    def detach(self, conn: UpstreamConnection) -> None:
        """Take a connection out of the pool's count for good (a WebSocket tunnel): long-lived
        tunnels must not use up the connections ordinary requests wait for."""
        if not conn.detached:
            conn.detached = True
            self._open -= 1
            self._slot_freed.unpark()

    def close(self) -> None:
        self._closed = True
        while self._idle:
            self._close_idle(self._idle.pop())

    async def run_reaper(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Close expired idle connections; lives in the server's nursery until cancelled."""
        task_status.started()
        try:
            while True:
                await trio.sleep(self.limits.idle_timeout_s / 2)
                self._expire_idle()
        finally:
            self.close()

    def _take_idle(self) -> UpstreamConnection | None:
        self._expire_idle()
        while self._idle:
            conn = self._idle.pop()
            if conn.looks_dead():
                self._close_idle(conn)
                continue
            conn.bytes_received = 0
            conn.uses += 1
            return conn
        return None

    def _expire_idle(self) -> None:
        cutoff = trio.current_time() - self.limits.idle_timeout_s
        expired = 0
        while self._idle and self._idle[0].idle_since <= cutoff:
            self._close_idle(self._idle.pop(0))
            expired += 1
        self.stats.expired += expired

    def _close_idle(self, conn: UpstreamConnection) -> None:
        conn.close()
        self._open -= 1
        self._slot_freed.unpark()

    async def _open_new(self) -> UpstreamConnection:
        self._open += 1
        try:
            conn = await self._connect()
        except BaseException:
            self._open -= 1
            self._slot_freed.unpark()
            raise
        self.stats.opened += 1
        conn.uses = 1
        log.debug("pool: new connection to %s (%d open)", conn.address, self._open)
        return conn

    async def _connect(self) -> UpstreamConnection:
        addresses = await self.resolver.resolve()
        errors: list[str] = []
        for family, sockaddr in addresses:
            address = format_host_port(sockaddr[0], sockaddr[1])
            try:
                sock = trio.socket.socket(family, socket.SOCK_STREAM)
            except OSError as exc:  # out of file descriptors (EMFILE) and the like
                raise UpstreamConnectError(f"cannot open a socket: {exc}") from exc
            try:
                with trio.fail_after(self.limits.connect_timeout_s):
                    await sock.connect(sockaddr)
            except trio.TooSlowError:
                sock.close()
                raise UpstreamTimeout(f"connect to upstream {address} timed out") from None
            except OSError as exc:
                sock.close()
                errors.append(f"{address}: {os.strerror(exc.errno) if exc.errno else exc}")
                continue
            except BaseException:
                sock.close()
                raise
            conn = h11.Connection(
                h11.CLIENT, max_incomplete_event_size=self.limits.max_response_head_bytes
            )
            return UpstreamConnection(trio.SocketStream(sock), conn, address)
        if len(errors) == 1:  # the address says it all (the name is on the line's context)
            raise UpstreamConnectError(f"cannot connect to upstream {errors[0]}")
        reason = "; ".join(errors) or "no address"
        raise UpstreamConnectError(f"cannot connect to upstream {self.resolver.host}: {reason}")
