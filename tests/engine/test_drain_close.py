"""A keep-alive connection closed by the drain after a response that could not say
``Connection: close`` (its head left before the drain began) closes with a linger: the
client reads the whole response, then a clean EOF it can retry on, never a reset.

Its next request may already be on its way when the proxy closes (under load the close comes
a while after the last write): closed with those bytes unread, the kernel sends a reset, and
the client's request fails though nothing went wrong (in production: 46 of 50 such clients).
Lingering, the proxy half-closes, reads and drops the request, and closes when the client
does.
"""

from __future__ import annotations

import h11
import pytest
import trio
import trio.testing

from ..memnet import MemoryNetwork, MemoryStream, ScriptedOrigin, memory_origin, memory_proxy

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


async def read_until_closed(stream: MemoryStream, received: bytearray) -> None:
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
                await read_until_closed(stream, received)
        await proxy.stopped()
    head, length, alone = one_response(bytes(received))
    assert head.status_code == 200 and length == SIZE and alone
    assert b"connection" not in dict(head.headers)  # its head left before the drain
    assert [r.status for r in proxy.records] == [200]  # the next request was not served
