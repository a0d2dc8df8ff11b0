"""A response found bad before any of it left is taken back and answered with an error
(`Exchange._take_back_unsent`), also after a 1xx: an interim response is no part of the
final one (RFC 9110 15.2), so a 100 Continue (the proxy's own, for a body it buffers) or a
relayed 103 does not stop the 502 from following it. And taking back never desynchronises
the connection: what was pipelined behind the request is answered once, in order, with a
body read as a body, however the client framed it.
"""

from __future__ import annotations

import contextlib

import h11
import trio
import trio.testing

from trioproxy.engine._memory import MemoryNetwork

from ..memnet import MemoryProxy, MemoryStream, memory_origin, memory_proxy
from ..support import parse_responses, read_head

# A chunked response with a framing field in its trailer section (RFC 9110 6.5.1).
BAD = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n0\r\nContent-Length: 5\r\n\r\n"
)


class Origin:
    """Answers ``/bad`` with `BAD` (then closes), anything else with what it got: the
    method, target and body; ``seen`` lists the requests as it read them."""

    def __init__(self, before: bytes = b"") -> None:
        self.before = before  # sent ahead of BAD (a 103)
        self.seen: list[tuple[bytes, bytes, bytes]] = []

    async def __call__(self, stream: MemoryStream) -> None:
        conn = h11.Connection(h11.SERVER)
        while (request := await self._read(stream, conn)) is not None:
            method, target, body = request
            self.seen.append(request)
            if target == b"/bad":
                await stream.send_all(self.before + BAD)
                return
            echo = b"%s %s %s" % (method, target, body)
            head = h11.Response(status_code=200, headers=[(b"Content-Length", b"%d" % len(echo))])
            out = conn.send(head) + conn.send(h11.Data(data=echo)) + conn.send(h11.EndOfMessage())
            await stream.send_all(out)
            conn.start_next_cycle()

    async def _read(
        self, stream: MemoryStream, conn: h11.Connection
    ) -> tuple[bytes, bytes, bytes] | None:
        head, body = None, b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                if not (data := await stream.receive_some(65536)):
                    return None
                conn.receive_data(data)
            elif isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage) and head is not None:
                return head.method, head.target, body
            else:
                return None


async def sent_through(data: bytes, *, eof: bool = True) -> tuple[bytes, MemoryProxy, Origin]:
    """``data`` sent (then an EOF) to a proxy in front of an `Origin`, read until the proxy
    closes, the proxy settled: what came back, the proxy and the origin."""
    origin = Origin()
    async with memory_proxy(origin=origin) as proxy:
        received = bytearray()
        async with proxy.open() as stream:
            await stream.send_all(data)
            if eof:
                await stream.send_eof()
            with trio.fail_after(100):  # far below any idle timeout: the proxy closed
                while chunk := await stream.receive_some(65536):
                    received += chunk
        await proxy.settled()
    return bytes(received), proxy, origin


async def test_after_the_proxys_own_100_continue_the_bad_response_becomes_a_502(
    autojump_clock: trio.testing.MockClock,
) -> None:
    received, proxy, _origin = await sent_through(
        b"POST /bad HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"
        b"abcGET /next HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    assert received.startswith(b"HTTP/1.1 100 ")
    final = received[received.index(b"\r\n\r\n") + 4 :]
    assert final.startswith(b"HTTP/1.1 502 "), received  # not a close after the 100
    (bad, after) = parse_responses(final, limit=2)
    assert (bad.status, bad.body) == (502, b"502 Bad Gateway\n")
    assert bad.header(b"connection") is None  # the request was read whole: the connection goes on
    assert (after.status, after.body) == (200, b"GET /next ")
    assert [(r.status, r.body_bytes_sent) for r in proxy.records] == [(502, 16), (200, 10)]


async def test_what_was_pipelined_behind_it_is_answered_once_in_order_bodies_as_bodies(
    autojump_clock: trio.testing.MockClock,
) -> None:
    smuggled = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
    received, proxy, origin = await sent_through(
        b"GET /bad HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
        % len(smuggled)
        + smuggled
        + b"POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"%x\r\n%s\r\n0\r\n\r\n"
        % (len(smuggled), smuggled)
        + b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    assert [(r.status, r.body) for r in parse_responses(received, limit=4)] == [
        (502, b"502 Bad Gateway\n"),
        (200, b"POST /a " + smuggled),
        (200, b"POST /b " + smuggled),
        (200, b"GET /c "),
    ]
    assert [target for _, target, _ in origin.seen] == [b"/bad", b"/a", b"/b", b"/c"]
    assert [r.status for r in proxy.records] == [502, 200, 200, 200]


async def test_an_http_10_client_gets_the_502_and_the_close(
    autojump_clock: trio.testing.MockClock,
) -> None:
    received, _proxy, origin = await sent_through(
        b"GET /bad HTTP/1.0\r\n\r\nGET /next HTTP/1.0\r\n\r\n", eof=False
    )
    (reply,) = parse_responses(received)
    assert (reply.status, reply.header(b"connection")) == (502, b"close")
    assert [target for _, target, _ in origin.seen] == [b"/bad"]  # never the next one


async def test_while_the_request_body_still_streams_the_client_gets_the_502_and_the_close(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The origin answers before reading the body (larger than the proxy buffers): the
    # connection cannot go on in step, so the 502 says close, and what the client still
    # sends of its body is read and dropped, never parsed as a request.
    async def answers_at_once(stream: MemoryStream) -> None:
        await read_head(stream)
        await stream.send_all(BAD)
        while await stream.receive_some(65536):
            pass

    network = MemoryNetwork()
    async with memory_origin(network, answers_at_once), memory_proxy(network=network) as proxy:
        async with proxy.open() as stream:
            await stream.send_all(
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + b"a" * 100_000
            )
            received = bytearray()
            with trio.fail_after(100):
                while chunk := await stream.receive_some(65536):
                    received += chunk
            with contextlib.suppress(trio.BrokenResourceError):  # the rest of "its body"
                await stream.send_all(b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
        await proxy.settled()
    (reply,) = parse_responses(bytes(received))
    assert (reply.status, reply.header(b"connection")) == (502, b"close")
    (record,) = proxy.records  # and nothing else was served
    assert (record.status, record.upstream_status, record.body_bytes_sent) == (502, 200, 16)
    assert len(proxy.upstream) == 1


async def test_a_response_stuck_behind_a_full_connection_is_taken_back_whole(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The client reads nothing for a while: the first response fills its connection to
    # the last byte, so the second one's head and first chunk are handed to a write that
    # takes none of them, and wait there when its bad trailer arrives. Taken back, they
    # must go whole: a client reading on must find the 502 right after the first response,
    # not the abandoned head and chunk with the 502 inside their body.
    async def origin(stream: MemoryStream) -> None:
        conn = h11.Connection(h11.SERVER)
        while request := await Origin()._read(stream, conn):
            _, target, _ = request
            if target == b"/slow-bad":
                end = BAD.index(b"0\r\n")
                await stream.send_all(BAD[:end])
                await trio.sleep(1)
                await stream.send_all(BAD[end:])
                return
            size = int(target.split(b"/")[2])
            head = h11.Response(status_code=200, headers=[(b"Content-Length", b"%d" % size)])
            out = conn.send(head) + conn.send(h11.Data(data=b"f" * size))
            await stream.send_all(out + conn.send(h11.EndOfMessage()))
            conn.start_next_cycle()

    network = MemoryNetwork()
    async with memory_origin(network, origin), memory_proxy(network=network) as proxy:
        async with proxy.client() as probe:  # how long the proxy's head is for this path
            head_size = len(await send_head_and_read(probe.stream, b"/fill/10")) - 10
        fill = network.capacity - head_size - 3  # (its Content-Length has 3 digits more)
        async with proxy.open() as stream:
            get = b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n"
            await stream.send_all(get % b"/fill/%d" % fill + get % b"/slow-bad")
            await trio.sleep(10)  # the bad trailer has come meanwhile
            received = bytearray()
            with trio.fail_after(100):
                while b"502 Bad Gateway\n" not in received:
                    if not (chunk := await stream.receive_some(65536)):
                        break
                    received += chunk
    first, second = parse_responses(bytes(received), limit=2)
    assert (first.status, len(first.body)) == (200, fill)
    assert (second.status, second.body) == (502, b"502 Bad Gateway\n")
    assert [r.status for r in proxy.records] == [200, 200, 502]  # (the probe's first)


async def send_head_and_read(stream: trio.abc.HalfCloseableStream, target: bytes) -> bytes:
    await stream.send_all(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % target)
    return bytes(await stream.receive_some(65536))
