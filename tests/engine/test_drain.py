"""Draining (``ProxyServer.shutdown``) on the memory network and the autojump clock: idle
connections close at once, busy ones finish their exchange and then close, even with the
next request already buffered. (The sweep that begins a drain at every step is with the other
sweeps in `test_cancellation`; the process-level drains, SIGTERM and /healthz, are in
e2e/test_drain.py.)

From test_mem_connection.py and the former e2e/test_promises.py (on loopback there).
"""

from __future__ import annotations

import trio
import trio.testing

from ..memnet import ScriptedOrigin, memory_proxy, wait_until
from ..support import HeldOrigin, read_until_closed


async def test_draining_closes_idle_connections_at_once_and_lets_busy_ones_finish(
    autojump_clock: trio.testing.MockClock,
) -> None:
    origin = ScriptedOrigin()
    async with memory_proxy(origin=origin) as proxy:
        async with proxy.client() as idle, proxy.client() as busy:
            assert (await idle.request(b"GET", b"/small")).status == 200
            await busy.stream.send_all(b"GET /slow/5 HTTP/1.1\r\nHost: x\r\n\r\n")
            await wait_until(lambda: origin.targets == [b"/small", b"/slow/5"])
            started = trio.current_time()
            proxy.server.shutdown()
            with trio.fail_after(1):
                assert await idle.stream.receive_some(1) == b""  # at once, in virtual time
            assert trio.current_time() == started
            with trio.fail_after(10):
                reply = await busy.read_reply()
                assert await busy.stream.receive_some(1) == b""
    assert reply.status == 200 and reply.header(b"connection") == b"close"
    assert [r.status for r in proxy.records] == [200, 200]


async def test_draining_closes_after_the_answer_even_with_a_pipelined_request_buffered(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """During a drain a connection ends after its in-flight exchange, with Connection: close,
    even when the client's next (pipelined) request is already in the proxy's buffer."""
    origin = HeldOrigin()
    pipelined = b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n"
    async with memory_proxy(origin=origin) as proxy:
        async with proxy.open() as stream:
            await stream.send_all(pipelined)  # both requests in one write: /2 is buffered
            with trio.fail_after(10):
                await origin.arrived.wait()
                proxy.server.shutdown()
                await trio.testing.wait_all_tasks_blocked()  # the drain has begun
                assert proxy.server.ctx.draining
                origin.release.set()
                received = await read_until_closed(stream)
    assert received.startswith(b"HTTP/1.1 200 ")
    assert received.count(b"HTTP/1.1 ") == 1  # /2 was not served
    assert b"\r\nConnection: close\r\n" in received
    assert len(origin.heads) == 1
