"""A fault that hangs one exchange's response holds no upstream connection while it hangs:
the client gets nothing more, so the origin's connection (and its place under
``upstream.max_connections``) goes at once, and the other clients are served. (A hang toward
the origin holds its connection: a stalled peer is what that fault shows the origin.)"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trioproxy.config._config import settings_from_bytes
from trioproxy.testing import ExchangeMatch, memory_world

from ..support import Client
from .test_faults import Origin

# One upstream connection in all, and a wait for it far shorter than a hang.
ONE_UPSTREAM = b"[upstream]\nmax_connections = 1\n[timeouts]\npool_wait_s = 3\n"


@pytest.mark.parametrize("at", ["before_head", "after_head"])
async def test_a_hung_response_leaves_the_upstream_connection_to_the_others(
    autojump_clock: trio.testing.MockClock, at: str
) -> None:
    settings = settings_from_bytes(ONE_UPSTREAM, file="trioproxy.toml")
    async with memory_world(origin=Origin(), settings=settings) as world:
        hang = {"kind": "hang", "direction": "client", "at": at}
        async with world.fault(match={"path_prefix": "/hang"}, **hang):
            async with world.open() as hung, world.open() as other:
                await hung.send_all(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
                await trio.sleep(1)  # the hang holds its exchange by now
                started = trio.current_time()
                reply = await Client(other).request(b"GET", b"/")
                assert (reply.status, trio.current_time() - started) == (200, 0.0)
        (entry,) = await world.journal.wait_for(ExchangeMatch(path="/hang"))
        assert entry.status == (200 if at == "after_head" else 444)  # 444: nothing went out
        assert entry.faults == (f"hang@client:{at}",)
