"""The connection loop reads a request that has already arrived without entering the idle
wait, and waits registered in `IdleConnections`, where the deadline, the drain and the
eviction find it, only when nothing is there yet."""

from __future__ import annotations

import dataclasses
import math

import trio
import trio.testing

from trioproxy.engine._connection import _read_request
from trioproxy.engine._context import IdleConnections, ProxyContext
from trioproxy.engine._memory import MemoryTransport, memory_transport_pair
from trioproxy.engine._peer import Downstream, server_h11

from ..memnet import memory_proxy, wait_until

GET = b"GET /small HTTP/1.1\r\nHost: x\r\n\r\n"


def _connection(
    server_ctx: ProxyContext,
) -> tuple[Downstream, ProxyContext, IdleConnections, MemoryTransport]:
    """A client connection beside the server's, served under a copy of its context with an
    idle registry of its own, which no reaper visits: its `wakes_at` stays finite once
    anything has waited in it."""
    client, server = memory_transport_pair()
    idle = IdleConnections()
    ctx = dataclasses.replace(server_ctx, idle=idle)
    return Downstream(server, server_h11(ctx.settings.limits)), ctx, idle, client


async def test_a_request_already_there_is_read_without_entering_the_idle_registry(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with memory_proxy() as proxy:
        down, ctx, idle, client = _connection(proxy.server.ctx)
        client.write_nowait(memoryview(GET))
        request = await _read_request(down, ctx, first=False)
    assert request is not None and request.target == b"/small"
    assert idle.wakes_at == math.inf  # nothing waited


async def test_a_request_not_there_yet_is_awaited_in_the_idle_registry(
    autojump_clock: trio.testing.MockClock,
) -> None:
    got: list[object] = []
    async with memory_proxy() as proxy, trio.open_nursery() as nursery:
        down, ctx, idle, client = _connection(proxy.server.ctx)

        async def read() -> None:
            got.append(await _read_request(down, ctx, first=False))

        nursery.start_soon(read)
        await wait_until(lambda: idle)  # waiting where the drain and the eviction see it
        client.write_nowait(memoryview(GET))
    assert idle.wakes_at < math.inf and not idle  # registered while waiting, then removed
    assert len(got) == 1 and got[0] is not None
