"""A 408 for a head trickled past its deadline reaches the client, whatever else the event
loop is doing at that moment.

The client's next byte can arrive in the same instant as the deadline. The connection is
closed without a linger (a client too slow to send a head gets no more of its slot), and a
close with that byte unread makes the kernel send a reset, which destroyed the 408 before
the client read it. Whether the byte came first depended on the schedule of unrelated tasks
(the pool's reaper: `upstream.idle_timeout_s` 4 passed, 5 failed), so the runs here vary the
reaper's period and the scheduler's seed.
"""

from __future__ import annotations

import contextlib

import pytest
import trio
import trio.testing

from ..memnet import memory_proxy
from ..support import make_settings

HEAD = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"y" * 1000


async def read_until_closed(stream: trio.abc.ReceiveStream) -> bytes:
    received = bytearray()
    while chunk := await stream.receive_some(65536):  # a reset raises here
        received += chunk
    return bytes(received)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("idle_timeout_s", [4.0, 5.0, 3.0, 7.0])
async def test_a_head_trickled_past_its_deadline_gets_its_408_whatever_the_schedule(
    autojump_clock: trio.testing.MockClock, idle_timeout_s: float, seed: int
) -> None:
    settings = make_settings(
        timeouts__client_header_s=10.0, upstream__idle_timeout_s=idle_timeout_s
    )
    async with memory_proxy(settings, seed=seed) as proxy:
        stream = proxy.open()
        async with stream, trio.open_nursery() as nursery:

            async def trickle() -> None:
                with contextlib.suppress(trio.BrokenResourceError):  # until it is cut off
                    for byte in HEAD:
                        await stream.send_all(bytes([byte]))
                        await trio.sleep(1.0)  # a byte a second, inside any timeout

            nursery.start_soon(trickle)
            with trio.fail_after(60):
                answer = await read_until_closed(stream)
            await trio.testing.wait_all_tasks_blocked()
            assert proxy.server.ctx.stats.connections_open == 0  # still no linger for it
            nursery.cancel_scope.cancel()
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert [r.status for r in proxy.records] == [408]
