"""The upstream's addresses, from the system resolver, reused for a short TTL.

``trio.socket.getaddrinfo`` runs the C library's resolver in a thread, so ``/etc/hosts`` comes
first and ``/etc/resolv.conf`` (search domains, ``ndots``) applies: exactly what the platform
contract asks of ``next-hop``. The answer can change, so it is never kept forever.
"""

from __future__ import annotations

import logging
import socket

import trio

from ._errors import UpstreamConnectError

log = logging.getLogger("trioproxy")

SockAddr = tuple[int, tuple[str, int] | tuple[str, int, int, int]]  # (family, sockaddr)


class Resolver:
    def __init__(self, host: str, port: int, *, ttl_s: float) -> None:
        self.host = host
        self.port = port
        self.ttl_s = ttl_s
        self._addresses: list[SockAddr] = []
        self._expires_at = -float("inf")
        self._lock = trio.Lock()  # one lookup at a time: no stampede on expiry
        self._failing = False

    async def resolve(self) -> list[SockAddr]:
        if trio.current_time() < self._expires_at:
            return self._addresses
        async with self._lock:
            if trio.current_time() >= self._expires_at:
                await self._refresh()
        return self._addresses

    async def _refresh(self) -> None:
        try:
            infos = await trio.socket.getaddrinfo(
                self.host, self.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
            )
        except OSError as exc:
            if not self._failing:
                log.warning("upstream %s does not resolve: %s", self.host, exc)
                self._failing = True
            # Failures are not cached: the next request asks again.
            raise UpstreamConnectError(f"cannot resolve {self.host}: {exc}") from exc
        if self._failing:
            log.info("upstream %s resolves again", self.host)
            self._failing = False
        self._addresses = [(family, sockaddr) for family, _, _, _, sockaddr in infos]  # type: ignore[misc]
        self._expires_at = trio.current_time() + self.ttl_s
