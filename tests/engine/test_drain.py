"""Draining (``ProxyServer.shutdown``) on the memory network and the autojump clock: idle
connections close at once, busy ones finish their exchange and then close, even with the
next request already buffered. (The sweep that begins a drain at every step is with the other
sweeps in `test_cancellation`; the process-level drains, SIGTERM and /healthz, are in
e2e/test_drain.py.)

From test_mem_connection.py and the former e2e/test_promises.py (on loopback there).
"""

from __future__ import annotations

import h11
import pytest
import trio
import trio.testing

from ..memnet import (
    MemoryNetwork,
    MemoryStream,
    ScriptedOrigin,
    in_flight,
    memory_origin,
    memory_proxy,
    scripted_proxy,
)
from ..support import HeldOrigin, read_until_closed


async def test_draining_closes_idle_connections_at_once_and_lets_busy_ones_finish(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scripted_proxy() as (proxy, origin):
        async with proxy.client() as idle, proxy.client() as busy:
            assert (await idle.request(b"GET", b"/small")).status == 200
            await in_flight(busy, origin, b"/slow/5")
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


# From the former test_drain_close.py: A keep-alive connection closed by the drain after a
# response that could not say ``Connection: close`` (its head left before the drain began) closes
# with a linger: the client reads the whole response, then a clean EOF it can retry on, never a
# reset.

SIZE = 1 << 20  # far more than the pipes and buffers hold: mid-response when the drain begins
GET_BIG = b"GET /big/%d HTTP/1.1\r\nHost: x\r\n\r\n" % SIZE
NEXT = b"GET /small HTTP/1.1\r\nHost: x\r\n\r\n"


def one_response(data: bytes) -> tuple[h11.Response, int, bool]:
    """The response at the start of ``data``: its head, its body's length, and whether
    nothing follows it."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method=b"GET", target=b"/", headers=[(b"Host", b"x")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(data)
    head, length = conn.next_event(), 0
    assert isinstance(head, h11.Response)
    while isinstance(event := conn.next_event(), h11.Data):
        length += len(event.data)
    assert isinstance(event, h11.EndOfMessage)
    return head, length, conn.trailing_data == (b"", False)


async def read_into_until_closed(stream: MemoryStream, received: bytearray) -> None:
    while chunk := await stream.receive_some(65536):  # a reset raises here
        received += chunk


@pytest.mark.parametrize("next_request", ["before-the-end", "after-the-end"])
async def test_a_client_mid_response_when_the_drain_begins_reads_it_whole_then_a_clean_eof(
    autojump_clock: trio.testing.MockClock, next_request: str
) -> None:
    network = MemoryNetwork()
    async with memory_origin(network, ScriptedOrigin()), memory_proxy(network=network) as proxy:
        stream = proxy.open()
        async with stream:
            await stream.send_all(GET_BIG)
            received = bytearray(await stream.receive_some(65536))  # the head and some body
            proxy.server.shutdown()
            await trio.testing.wait_all_tasks_blocked()
            if next_request == "before-the-end":  # arrives before the proxy closes
                await stream.send_all(NEXT)
            with trio.fail_after(10):
                while len(received) < SIZE:
                    received += await stream.receive_some(65536)
                if next_request == "after-the-end":
                    await stream.send_all(NEXT)
                await read_into_until_closed(stream, received)
        await proxy.stopped()
    head, length, alone = one_response(bytes(received))
    assert head.status_code == 200 and length == SIZE and alone
    assert b"connection" not in dict(head.headers)  # its head left before the drain
    assert [r.status for r in proxy.records] == [200]  # the next request was not served
