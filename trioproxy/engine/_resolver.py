"""The upstream's addresses, from the system resolver, reused for a short TTL.

``trio.socket.getaddrinfo`` runs the C library's resolver in a thread, so ``/etc/hosts`` comes
first and ``/etc/resolv.conf`` (search domains, ``ndots``) applies: exactly what the platform
contract asks of ``next-hop``. The answer can change, so it is never kept forever.

Failing well: one lookup runs at a time, in the resolver's own task (a caller that gives up
does not cancel it for the others); every caller waits for it only until its own deadline;
its outcome, a failure included, is shared by all who waited and remembered (a failure for
``negative_ttl_s``), so a resolver outage costs each request at most one lookup's wait.
After a failure, or while a lookup is slow, the last good answer (if any) is used.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable

import trio

from ..core._errors import UpstreamConnectError, UpstreamTimeout

log = logging.getLogger("trioproxy")

SockAddr = tuple[int, tuple[str, int] | tuple[str, int, int, int]]  # (family, sockaddr)
Lookup = Callable[[str, int], Awaitable[list[SockAddr]]]

# With a last good answer, how long a request waits for a fresh one before using the old:
# long enough for a working resolver (a millisecond here), short for a failing one.
_STALE_AFTER_S = 0.5


async def system_lookup(host: str, port: int) -> list[SockAddr]:
    infos = await trio.socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return [(family, sockaddr) for family, _, _, _, sockaddr in infos]  # type: ignore[misc]


class Resolver:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        ttl_s: float,
        negative_ttl_s: float = 1.0,
        lookup_timeout_s: float = 60.0,
        lookup: Lookup = system_lookup,
    ) -> None:
        self.host = host
        self.port = port
        self.retime(ttl_s=ttl_s, negative_ttl_s=negative_ttl_s, lookup_timeout_s=lookup_timeout_s)
        self._lookup = lookup
        self._addresses: list[SockAddr] = []
        self._current: frozenset[object] = frozenset()  # sockaddrs of the last good answer
        self._expires_at = -float("inf")
        self._failure: UpstreamConnectError | None = None
        self._failure_expires_at = -float("inf")
        self._in_flight: trio.Event | None = None
        self._nursery: trio.Nursery | None = None
        self._failing = False

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Host the lookups until cancelled (in the pool's task, in the server's nursery)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._nursery = None

    def retime(self, *, ttl_s: float, negative_ttl_s: float, lookup_timeout_s: float) -> None:
        """Take new timings (at start, and at a reload): the next answers and lookups use them."""
        self.ttl_s = ttl_s
        self.negative_ttl_s = negative_ttl_s
        self.lookup_timeout_s = lookup_timeout_s  # the connect deadline: nobody waits longer

    def still_current(self, sockaddr: object, now: float) -> bool:
        """Whether an address is still in the answer (True before there is any answer); an
        answer expired at ``now`` is refreshed in the background first (`refresh_if_stale`).
        One call for the pool's two questions about every connection it takes or keeps."""
        if now >= self._expires_at:
            self.refresh_if_stale(now)
        return sockaddr in self._current or not self._current  # (the usual answer first)

    @property
    def expires_at(self) -> float:
        """When the answer expires (-inf before the first). No lookup starts before, so until
        then the answer cannot change: `still_current`'s True holds until this time."""
        return self._expires_at

    def refresh_if_stale(self, now: float) -> None:
        """Start a lookup in the background if the answer has expired at ``now``: connections
        that are only ever reused must still learn that the answer changed. Not once `run` has
        ended (a server being cancelled gives connections back after its lookups' nursery is
        gone)."""
        # (The answer's expiry first: nearly always still ahead, and the pool asks twice a
        # request.)
        if now >= self._expires_at and self._nursery is not None and self._may_ask(now):
            self._start_lookup()

    async def resolve(self, deadline: float) -> list[SockAddr]:
        """The current addresses: cached, or from the lookup in flight, by ``deadline``.

        With a last good answer, a request waits for a lookup at most ``_STALE_AFTER_S``
        and then takes that answer: a slow or failing resolver delays nobody for long."""
        now = trio.current_time()
        if now < self._expires_at:
            return self._addresses
        if self._may_ask(now):
            if self._nursery is None:  # `run` has ended: the server is being cancelled
                await trio.lowlevel.checkpoint_if_cancelled()
            done = self._start_lookup()
            wait_until = min(deadline, now + _STALE_AFTER_S) if self._addresses else deadline
            with trio.move_on_at(wait_until):
                await done.wait()
            if not done.is_set() and not self._addresses:
                raise UpstreamTimeout(f"resolving upstream {self.host} timed out")
        if self._failure is not None and not self._addresses:
            raise self._failure
        return self._addresses

    def _may_ask(self, now: float) -> bool:
        """The answer has expired, and no failure is remembered (the negative TTL)."""
        return now >= self._expires_at and (
            self._failure is None or now >= self._failure_expires_at
        )

    def _start_lookup(self) -> trio.Event:
        if self._in_flight is None:
            if self._nursery is None:
                raise RuntimeError("Resolver.run is not running")
            self._in_flight = trio.Event()
            self._nursery.start_soon(self._refresh, self._in_flight)
        return self._in_flight

    async def _refresh(self, done: trio.Event) -> None:
        try:
            with trio.move_on_after(self.lookup_timeout_s) as scope:
                addresses = await self._lookup(self.host, self.port)
            if scope.cancelled_caught:  # (trio abandons the resolver's thread)
                raise OSError(f"no answer in {self.lookup_timeout_s:g} s")
            if not addresses:
                raise OSError("no address")
        except OSError as exc:
            if not self._failing:
                log.warning("upstream %s does not resolve: %s", self.host, exc)
                self._failing = True
            self._failure = UpstreamConnectError(f"cannot resolve {self.host}: {exc}")
            self._failure_expires_at = trio.current_time() + self.negative_ttl_s
        else:
            if self._failing:
                log.info("upstream %s resolves again", self.host)
                self._failing = False
            self._failure = None
            self._addresses = addresses
            self._current = frozenset(sockaddr for _, sockaddr in addresses)
            self._expires_at = trio.current_time() + self.ttl_s
        finally:
            self._in_flight = None
            done.set()
