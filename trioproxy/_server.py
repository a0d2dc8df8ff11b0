"""The server: accept loops, one task per connection, the pool's reaper, graceful drain.

Task tree (every task has an owner)::

    ProxyServer.run
    └── outer nursery ── pool reaper
        └── handlers nursery ── one serve_connection task per client
            └── accept nursery ── one accept loop per listener

Draining cancels the accept nursery, closes idle keep-alive connections at once, and gives
in-flight exchanges ``drain_s`` before the handlers nursery is cancelled.
"""

from __future__ import annotations

import errno
import logging
import traceback
from collections.abc import Callable

import trio

from ._accesslog import AccessRecord
from ._addr import format_host_port
from ._connection import serve_connection
from ._context import ProxyContext
from ._headers import ForwardingRules
from ._pool import PoolLimits, UpstreamPool
from ._resolver import Resolver
from ._settings import Settings

log = logging.getLogger("trioproxy")

# Accept errors that mean "out of a resource for now", not "this listener is broken"
# (the list trio's serve_listeners uses).
_ACCEPT_CAPACITY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}


class ProxyServer:
    def __init__(
        self,
        settings: Settings,
        upstream: tuple[str, int],
        access_log: Callable[[AccessRecord], None],
    ) -> None:
        self.settings = settings
        self.upstream = upstream
        resolver = Resolver(upstream[0], upstream[1], ttl_s=settings.upstream.dns_ttl_s)
        pool = UpstreamPool(
            resolver,
            PoolLimits(
                size=settings.upstream.pool_size,
                idle_timeout_s=settings.upstream.idle_timeout_s,
                connect_timeout_s=settings.timeouts.upstream_connect_s,
                wait_timeout_s=settings.timeouts.pool_wait_s,
                max_response_head_bytes=settings.limits.max_header_bytes,
            ),
        )
        self.ctx = ProxyContext(
            settings=settings,
            pool=pool,
            upstream_authority=format_host_port(*upstream).encode("ascii"),
            log_access=access_log,
            rules=ForwardingRules(
                via=settings.forwarding.via_name.encode("ascii"),
                append_x_forwarded_for=settings.forwarding.append_x_forwarded_for,
            ),
        )
        self._slots = trio.Semaphore(settings.limits.max_connections)
        self._accepting = trio.CancelScope()

    @property
    def pool(self) -> UpstreamPool:
        return self.ctx.pool

    def shutdown(self) -> None:
        """Stop accepting and start draining; ``run`` returns when the drain is over."""
        self._accepting.cancel()

    async def run(
        self,
        listeners: list[trio.SocketListener],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            async with trio.open_nursery() as outer:
                await outer.start(self.pool.run_reaper)
                async with trio.open_nursery() as handlers:
                    with self._accepting:
                        async with trio.open_nursery() as acceptors:
                            for listener in listeners:
                                acceptors.start_soon(self._accept_loop, listener, handlers)
                            task_status.started()
                    _close_listeners(listeners)
                    self._drain(handlers)
                outer.cancel_scope.cancel()
        finally:
            _close_listeners(listeners)

    def _drain(self, handlers: trio.Nursery) -> None:
        open_now = self.ctx.stats.connections_open
        log.info(
            "draining: %d connection(s) open, up to %gs", open_now, self.settings.timeouts.drain_s
        )
        self.ctx.start_draining()
        handlers.cancel_scope.deadline = trio.current_time() + self.settings.timeouts.drain_s

    async def _accept_loop(self, listener: trio.SocketListener, handlers: trio.Nursery) -> None:
        while True:
            await self._slots.acquire()  # beyond max_connections, clients wait in the backlog
            try:
                stream = await listener.accept()
            except OSError as exc:
                self._slots.release()
                if exc.errno not in _ACCEPT_CAPACITY_ERRNOS:
                    raise
                log.error("accept failed (%s); pausing 100 ms", exc.strerror)
                await trio.sleep(0.1)
                continue
            except BaseException:
                self._slots.release()
                raise
            handlers.start_soon(self._handle, stream)

    async def _handle(self, stream: trio.SocketStream) -> None:
        stats = self.ctx.stats
        stats.connections_open += 1
        stats.connections_total += 1
        try:
            await serve_connection(stream, self.ctx)
        except Exception as exc:
            where = traceback.extract_tb(exc.__traceback__)[-1]
            log.error(
                "internal error on a connection: %r at %s:%s", exc, where.filename, where.lineno
            )
        finally:
            stats.connections_open -= 1
            self._slots.release()
            await trio.aclose_forcefully(stream)


def _close_listeners(listeners: list[trio.SocketListener]) -> None:
    for listener in listeners:
        listener.socket.close()  # synchronous: safe under cancellation, idempotent
