"""How deep a request waits: every coroutine frame in a task's chain is resumed at each of
its waits, so the exchange path keeps the chain short where requests spend their time."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from tests.memnet import all_tasks, awaiting, in_flight, scripted_proxy
from trioproxy.engine import _connection, _exchange

# Compiled coroutines (scripts/test-compiled) are not Python coroutine objects: no frames to
# read (the walk starts at the connection's).
_COMPILED = not all(str(m.__file__).endswith(".py") for m in (_connection, _exchange))


@pytest.mark.skipif(_COMPILED, reason="a compiled coroutine has no frames to inspect")
async def test_a_request_waits_for_its_response_head_right_under_its_exchange(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scripted_proxy() as (proxy, origin), proxy.client() as client:
        await in_flight(client, origin, b"/slow/5")
        await trio.testing.wait_all_tasks_blocked()
        stacks = [awaiting(t) for t in all_tasks() if "serve_connection" in awaiting(t)]
        assert len(stacks) == 1
        waiting = stacks[0]
        # The connection's loop, the exchange (forwarding inline), the head's reader.
        serve = waiting.index("serve_connection")
        assert waiting[serve + 1 : serve + 3] == ["serve", "read_response_head"], waiting
        assert (await client.read_reply()).status == 200  # and it is answered
