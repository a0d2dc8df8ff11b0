"""A hook point that hangs or raises on one request costs that request alone: it is ended by
its ``timeout_s`` (or at once), named in one diagnostics line with the request ID, and
another client's request meanwhile is served without waiting for it."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from trioproxy.hooks import Exchange, ResponseHead

from ..memnet import ScriptedOrigin, memory_proxy
from ..support import Client
from .test_hooks import embedded

TIMEOUT_S = 30.0


class Misbehaving:
    """Hangs (``how="hang"``) or raises (``"raise"``) at ``point`` for ``/bad`` only."""

    def __init__(self, point: str, how: str) -> None:
        self.point, self.how = point, how

    async def _misbehave(self, exchange: Exchange, point: str) -> None:
        if point == self.point and exchange.request.path == "/bad":
            if self.how == "hang":
                await trio.sleep_forever()
            raise RuntimeError("hook bug")

    async def request(self, exchange: Exchange) -> None:
        await self._misbehave(exchange, "request")

    async def response(self, exchange: Exchange, response: ResponseHead) -> None:
        await self._misbehave(exchange, "response")

    async def response_body(self, exchange: Exchange, chunk: bytes, end: bool) -> bytes:
        await self._misbehave(exchange, "response_body")
        return chunk

    async def access(self, exchange: Exchange, status: int) -> None:
        await self._misbehave(exchange, "access")


@pytest.mark.parametrize("how", ["hang", "raise"])
@pytest.mark.parametrize("point", ["request", "response", "response_body", "access"])
async def test_a_hook_that_hangs_or_raises_costs_its_own_request_alone(
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
    point: str,
    how: str,
) -> None:
    settings = embedded(("h", {}), timeout_s=TIMEOUT_S, on_error=503)
    hooks: dict[str, Any] = {"h": Misbehaving(point, how)}
    origin = ScriptedOrigin()
    async with memory_proxy(settings, origin=origin, hooks=hooks) as proxy:
        async with proxy.open() as bad_stream, proxy.client() as good:
            bad = Client(bad_stream)
            await bad_stream.send_all(b"GET /bad HTTP/1.1\r\nHost: x\r\n\r\n")
            await trio.testing.wait_all_tasks_blocked()  # /bad is in its hook by now
            started = trio.current_time()
            reply = await good.request(b"GET", b"/small")
            assert (reply.status, trio.current_time() - started) == (200, 0.0)
            bad_reply = await bad.read_reply()
            await proxy.logged(2)  # (an access hook holds the line, not the reply)
            took = trio.current_time() - started
    # The on_error answer, also for a body hook: the small response is taken back whole.
    assert bad_reply.status == (200 if point == "access" else 503)
    assert took == (TIMEOUT_S if how == "hang" else 0.0)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("hook h:")]
    (bad_record,) = [r for r in proxy.log.records if r.target == b"/bad"]
    assert len(lines) == 1 and bad_record.request_id.decode() in lines[0], lines
    assert ("timed out" if how == "hang" else "RuntimeError('hook bug')") in lines[0]
