"""One request's exchange: the state that travels with it from its head to its access line.

What forwarding a request needs — the client's connection, the request and its plan, the
upstream connection once taken, the body on its way, the access record being filled, the
context it started under — in one object with the few judgements made on it, instead of
argument lists threaded through every step (`_forward`, `_requestbody`, `_response`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config._settings import Limits, Timeouts
from ..core._accesslog import AccessRecord
from ..core._chunked import ChunkedChecker
from ..core._headers import RequestPlan
from ._context import ProxyContext
from ._h11 import h11
from ._peer import Downstream, UpstreamConnection

if TYPE_CHECKING:
    from ._hooks import HookCalls


@dataclass(slots=True)
class RequestBody:
    """A request body on its way: its framing checker and its one total deadline."""

    chunks: ChunkedChecker | None
    deadline: float


@dataclass(slots=True)
class Exchange:
    down: Downstream
    request: h11.Request
    plan: RequestPlan
    record: AccessRecord
    ctx: ProxyContext  # the configuration current when the request started
    up: UpstreamConnection | None = None  # while one is held
    body: RequestBody | None = None  # a request body still to send upstream
    hooks: HookCalls | None = None  # the hooks this request triggered (their later points)

    @property
    def timeouts(self) -> Timeouts:
        return self.ctx.settings.timeouts

    @property
    def limits(self) -> Limits:
        return self.ctx.settings.limits

    @property
    def upstream(self) -> UpstreamConnection:
        assert self.up is not None, "no upstream connection held"
        return self.up

    @property
    def last_on_connection(self) -> bool:
        """Whether the client connection closes after this response: draining, its last
        allowed request (``limits.keepalive_requests``), or answered before its request body
        was read (an early 413, 401 or refused 100-continue)."""
        down = self.down
        return self.ctx.draining or down.closing or down.h11.their_state is h11.SEND_BODY

    async def flush_to_client(self) -> None:
        await self.down.flush(self.ctx.settings.timeouts.client_send_s)
