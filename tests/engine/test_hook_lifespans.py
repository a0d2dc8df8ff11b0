"""A hook's lifespan is user code running beside every request: one that raises, or whose
background task raises, is named in one diagnostics line and counted, and the proxy goes
on serving (it is the hook's failure, not the proxy's)."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing

from trioproxy.hooks import Exchange

from ..memnet import ScriptedOrigin, memory_proxy
from .test_hooks import embedded


class Failing:
    """A lifespan that raises at once (``where="lifespan"``), or from the task it started
    (``"task"``; ``"started task"``: `nursery.start`'s, after it reported started;
    ``"starting task"``: before, so that `start` raises it in the lifespan, as trio's does)."""

    def __init__(self, where: str) -> None:
        self.where = where

    async def lifespan(self, nursery: trio.Nursery) -> None:
        if self.where == "lifespan":
            raise RuntimeError("no key server")
        if self.where == "task":
            nursery.start_soon(self._refresh)
        else:
            await nursery.start(self._started)

    async def _refresh(self) -> None:
        await trio.sleep(1)
        raise RuntimeError("no key server")

    async def _started(self, task_status: trio.TaskStatus[None]) -> None:
        if self.where == "starting task":
            raise RuntimeError("no key server")
        task_status.started()
        await trio.sleep(1)
        raise RuntimeError("no key server")

    async def request(self, exchange: Exchange) -> None:
        exchange.set_response_header("X-Hook", "ran")


@pytest.mark.parametrize("where", ["lifespan", "task", "started task", "starting task"])
async def test_a_lifespan_that_raises_is_named_and_the_proxy_serves_on(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture, where: str
) -> None:
    caplog.set_level(logging.WARNING, logger="trioproxy")
    origin = ScriptedOrigin()
    hooks = {"keys": Failing(where)}
    async with memory_proxy(embedded(("keys", {})), origin=origin, hooks=hooks) as proxy:
        await trio.sleep(2)  # past the failure
        async with proxy.client() as client:
            reply = await client.request(b"GET", b"/small")
        assert (reply.status, reply.header(b"x-hook")) == (200, b"ran")
        lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("hook ")]
        assert len(lines) == 1, lines
        assert lines[0].startswith("hook keys: lifespan failed: RuntimeError('no key server')")
        assert "test_hook_lifespans.py:" in lines[0]  # where the hook's code raised
        assert proxy.server.hook_stats["keys"].errors == 1
