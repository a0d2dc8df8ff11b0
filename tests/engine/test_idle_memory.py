"""What an idle connection holds: no buffer of its last response, and a shallow wait (the
RSS figures are bench/connmem.py's; these are the properties behind them)."""

from __future__ import annotations

import h11
import pytest
import trio
import trio.testing

from tests.memnet import all_tasks, awaiting, scripted_proxy
from trioproxy.engine import _connection
from trioproxy.engine._memory import memory_transport_pair
from trioproxy.engine._peer import Downstream

# Compiled coroutines (scripts/test-compiled) are not Python coroutine objects: no frames to read.
_COMPILED = not _connection.__file__.endswith(".py")


async def test_a_wire_keeps_no_view_of_what_it_has_sent() -> None:
    near, far = memory_transport_pair()
    down = Downstream(near, h11.Connection(h11.SERVER))
    down.queue(h11.Response(status_code=200, headers=[("Content-Length", "5")]))
    down.queue(h11.Data(data=b"hello"))
    await down.send_queued(1.0)
    # An empty slice of the sent buffer would still keep the whole buffer alive.
    assert not down.has_queued
    assert down._sending.obj is None or len(down._sending.obj) == 0  # type: ignore[arg-type]
    assert far.read_nowait(1000) is not None


@pytest.mark.skipif(_COMPILED, reason="a compiled coroutine has no frames to inspect")
async def test_an_idle_connection_waits_without_a_read_in_progress(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scripted_proxy() as (proxy, _origin), proxy.client() as client:
        assert (await client.request(b"GET", b"/small")).status == 200
        await trio.testing.wait_all_tasks_blocked()
        stacks = [awaiting(t) for t in all_tasks() if "serve_connection" in awaiting(t)]
        assert len(stacks) == 1
        idle = stacks[0]
        assert "_read_request" in idle and "wait_readable" in idle
        assert not {"recv", "_recv_after_waiting", "_wait"} & set(idle), idle
        assert (await client.request(b"GET", b"/small")).status == 200  # and it still serves
