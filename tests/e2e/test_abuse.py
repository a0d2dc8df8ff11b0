"""The abuse suite: each attack of the isolation issue at a small scale, against the real
server on loopback, with a pass criterion that does not depend on the machine's speed.

- floods of one-byte chunks, both ways: the connection that carries them yields at least
  once per slice of events, and another client is served while it lasts;
- clients that never send their body, or never read their response: no upstream connection
  is held for them, and a normal request is served;
- idle keep-alive connections at the connection limit: a newcomer gets a slot;
- an origin sending informational responses without end: the deadline and the cap hold;
- a client that leaves while its request waits for an upstream connection: never sent.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio
import trio.testing

from ..memnet import ScriptedOrigin, counting_steps
from ..support import (
    Client,
    RunningProxy,
    make_settings,
    raw_origin,
    read_head,
    running_proxy,
)

CHUNKS = 30_000  # one-byte chunks in a flood (the issue measured a million; the shape is the same)
CHUNKS_PER_SLICE = 64  # trioproxy.engine._slices._EVENTS_PER_SLICE


@asynccontextmanager
async def scripted_origin() -> AsyncIterator[tuple[str, int]]:
    """`memnet.ScriptedOrigin` (any trio stream will do) on a loopback socket."""
    async with raw_origin(ScriptedOrigin()) as address:
        yield address


def chunked_upload(count: int) -> bytes:
    head = b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    return head + b"1\r\nx\r\n" * count + b"0\r\n\r\n"


async def other_client_is_served_meanwhile(address: tuple[str, int], done: trio.Event) -> int:
    """Normal requests on another connection until ``done``; how many were answered."""
    served = 0
    async with Client.connect(address) as client:
        while not done.is_set():
            assert (await client.request(b"GET", b"/small")).status == 200
            served += 1
    return served


async def flood_beside_another_client(
    flood: Callable[[Client], Awaitable[None]],
) -> tuple[int, int]:
    """Run ``flood`` on one connection while another client sends requests; return the
    most steps any connection task took, and how many requests the other client got
    answered before the flood ended."""
    async with scripted_origin() as origin, running_proxy(origin) as proxy:
        done = trio.Event()
        served: list[int] = []
        with counting_steps() as counter:
            async with trio.open_nursery() as nursery:

                async def other() -> None:
                    served.append(await other_client_is_served_meanwhile(proxy.address, done))

                async def flooding() -> None:
                    async with Client.connect(proxy.address) as client:
                        await flood(client)
                    done.set()

                nursery.start_soon(other)
                nursery.start_soon(flooding)
        busiest = max(n for task, n in counter.steps.items() if task.name.endswith("_handle"))
    return busiest, served[0]


async def test_one_byte_chunk_upload_is_sliced_and_others_are_served() -> None:
    async def upload(client: Client) -> None:
        await client.stream.send_all(chunked_upload(CHUNKS))
        assert (await client.read_reply()).body == b"%d" % CHUNKS

    busiest, served = await flood_beside_another_client(upload)
    # The flood's connection task yielded at least once per slice of chunks (it used to walk
    # a whole 64 KiB buffer, some eleven thousand chunks, in one step).
    assert busiest >= CHUNKS / (4 * CHUNKS_PER_SLICE)
    assert served >= 1


async def test_one_byte_chunk_download_is_sliced_and_others_are_served() -> None:
    async def download(client: Client) -> None:
        assert (await client.request(b"GET", b"/chunks/%d" % CHUNKS)).body == b"x" * CHUNKS

    busiest, served = await flood_beside_another_client(download)
    assert busiest >= CHUNKS / (4 * CHUNKS_PER_SLICE)
    assert served >= 1


async def _wait_until(condition: object) -> None:
    assert callable(condition)
    while not condition():
        await trio.testing.wait_all_tasks_blocked()


async def test_clients_that_never_send_their_body_hold_no_upstream_connection() -> None:
    """Expect: 100-continue and never the body, or a body cut short: the proxy holds such
    requests itself; the pool stays empty and a normal request is answered."""
    settings = make_settings(upstream__pool_size=2, timeouts__pool_wait_s=30)
    async with scripted_origin() as origin, running_proxy(origin, settings) as proxy:
        attackers: list[trio.SocketStream] = []
        for i in range(9):
            stream = await trio.open_tcp_stream(*proxy.address)
            attackers.append(stream)
            expect = b"Expect: 100-continue\r\n" if i % 2 else b""
            framing = b"Transfer-Encoding: chunked" if i % 3 == 2 else b"Content-Length: 1000"
            body = b"64\r\n" + b"y" * 50 if i % 3 == 2 else b"y" * (i * 100)
            await stream.send_all(
                b"POST / HTTP/1.1\r\nHost: x\r\n" + framing + b"\r\n" + expect + b"\r\n" + body
            )
        await trio.testing.wait_all_tasks_blocked()
        assert proxy.server.pool.open_count == 0
        with trio.fail_after(5):  # the pool would make it wait pool_wait_s (30 s)
            async with Client.connect(proxy.address) as client:
                assert (await client.request(b"GET", b"/small")).status == 200
        for stream in attackers:
            await stream.aclose()


async def test_a_body_larger_than_the_buffer_streams_and_a_trickle_is_cut_off() -> None:
    """Past the buffer a body streams upstream (holding one connection, which is nobody
    else's); a client that then trickles falls below the rate floor: 408, connection gone."""
    settings = make_settings(
        timeouts__client_body_s=0.3, limits__min_body_rate_bytes_per_s=1_000_000
    )
    async with scripted_origin() as origin, running_proxy(origin, settings) as proxy:
        stream = await trio.open_tcp_stream(*proxy.address)
        async with stream:
            await stream.send_all(
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"y" * 70000
            )
            await _wait_until(lambda: proxy.server.pool.open_count == 1)
            async with Client.connect(proxy.address) as client:  # meanwhile, others are served
                assert (await client.request(b"GET", b"/small")).status == 200
            async with trio.open_nursery() as nursery:

                async def trickle() -> None:  # a byte just inside each inactivity timeout
                    with contextlib.suppress(trio.BrokenResourceError):
                        while True:
                            await stream.send_all(b"y")
                            await trio.sleep(0.1)

                nursery.start_soon(trickle)
                with trio.fail_after(10):
                    answer = await stream.receive_some(65536)
                nursery.cancel_scope.cancel()
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert proxy.records[-1].status == 408
        await _wait_until(lambda: proxy.server.pool.open_count <= 1)
        assert proxy.server.pool.idle_count == proxy.server.pool.open_count


async def test_a_slow_body_inside_the_buffer_meets_the_rate_floor_too() -> None:
    settings = make_settings(
        timeouts__client_body_s=0.3, limits__min_body_rate_bytes_per_s=1_000_000
    )
    async with scripted_origin() as origin, running_proxy(origin, settings) as proxy:
        stream = await trio.open_tcp_stream(*proxy.address)
        async with stream, trio.open_nursery() as nursery:
            await stream.send_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")

            async def trickle() -> None:
                with contextlib.suppress(trio.BrokenResourceError):
                    while True:
                        await stream.send_all(b"y")
                        await trio.sleep(0.1)

            nursery.start_soon(trickle)
            with trio.fail_after(10):
                answer = await stream.receive_some(65536)
            nursery.cancel_scope.cancel()
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert proxy.server.pool.open_count == 0  # it never got near the origin


@dataclass
class HeldSlot:
    """A proxy whose only upstream connection (upstream.max_connections = 1) is held by a
    first request until ``release`` is set; the origin answers every later request at once."""

    proxy: RunningProxy
    first: Client
    heads: list[bytes] = field(default_factory=list)
    release: trio.Event = field(default_factory=trio.Event)


@asynccontextmanager
async def the_only_slot_held() -> AsyncIterator[HeldSlot]:
    heads: list[bytes] = []
    release = trio.Event()

    async def first_waits(stream: trio.SocketStream) -> None:
        while head := await read_head(stream):
            heads.append(head)
            if len(heads) == 1:
                await release.wait()
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    settings = make_settings(upstream__max_connections=1, timeouts__pool_wait_s=30)
    async with raw_origin(first_waits) as origin, running_proxy(origin, settings) as proxy:
        async with trio.open_nursery() as nursery:
            first = Client(await trio.open_tcp_stream(*proxy.address))
            nursery.start_soon(first.request, b"GET", b"/first")
            await _wait_until(lambda: heads)
            yield HeldSlot(proxy, first, heads, release)
            await first.stream.aclose()


async def _queue_for_the_slot(held: HeldSlot, target: bytes) -> trio.SocketStream:
    stream = await trio.open_tcp_stream(*held.proxy.address)
    await stream.send_all(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % target)
    await _wait_until(lambda: held.proxy.server.pool.waiting_count)
    return stream


async def test_an_urgent_byte_from_a_waiting_client_does_not_hold_the_slot() -> None:
    async with the_only_slot_held() as held:
        waiting = await _queue_for_the_slot(held, b"/second")
        await waiting.socket.send(b"!", socket.MSG_OOB)
        held.release.set()
        with trio.fail_after(5):
            assert (await waiting.receive_some(65536)).startswith(b"HTTP/1.1 200 ")
            async with Client.connect(held.proxy.address) as third:
                assert (await third.request(b"GET", b"/third")).status == 200
        await waiting.aclose()


async def test_clients_that_never_read_release_the_upstream_connection() -> None:
    """A response that fits the buffer is read whole and the connection goes back to the
    pool, however slowly (here: never) the client reads it."""
    async with scripted_origin() as origin, running_proxy(origin) as proxy:
        attackers: list[trio.SocketStream] = []
        for _ in range(6):
            stream = await trio.open_tcp_stream(*proxy.address)
            attackers.append(stream)
            # Pipelined: the second response waits for the client to read the first.
            await stream.send_all(b"GET /big/40000 HTTP/1.1\r\nHost: x\r\n\r\n" * 30)
        pool = proxy.server.pool
        with trio.fail_after(10):
            await _wait_until(lambda: pool.open_count and pool.idle_count == pool.open_count)
            async with Client.connect(proxy.address) as client:
                assert (await client.request(b"GET", b"/small")).status == 200
        for stream in attackers:
            await stream.aclose()


async def test_a_client_that_never_reads_a_large_response_is_cut_off_by_the_rate_floor() -> None:
    settings = make_settings(
        timeouts__client_send_s=0.2, limits__min_send_rate_bytes_per_s=1_000_000
    )
    async with scripted_origin() as origin, running_proxy(origin, settings) as proxy:
        stream = await trio.open_tcp_stream(*proxy.address)
        async with stream:
            await stream.send_all(b"GET /big/50000000 HTTP/1.1\r\nHost: x\r\n\r\n")
            with trio.fail_after(30):
                await _wait_until(lambda: proxy.records)
        assert proxy.records[0].status == 200  # the head went out; then it was cut off
        assert proxy.records[0].body_bytes_sent < 50_000_000
        assert proxy.server.pool.open_count == 0  # the upstream connection was discarded


async def test_a_newcomer_gets_a_slot_from_the_oldest_idle_connection() -> None:
    settings = make_settings(limits__max_connections=3, timeouts__client_idle_s=60)
    async with scripted_origin() as origin, running_proxy(origin, settings) as proxy:
        async with trio.open_nursery() as nursery:
            clients: list[Client] = []
            for _ in range(3):
                client = Client(await trio.open_tcp_stream(*proxy.address))
                clients.append(client)
                assert (await client.request(b"GET", b"/small")).status == 200

            async def refresh(client: Client) -> None:
                """The attacker keeps its other connections alive."""
                while True:
                    await trio.sleep(0.2)
                    assert (await client.request(b"GET", b"/small")).status == 200

            for client in clients[1:]:
                nursery.start_soon(refresh, client)
            with trio.fail_after(5):  # idle connections last client_idle_s (60 s)
                async with Client.connect(proxy.address) as newcomer:
                    assert (await newcomer.request(b"GET", b"/small")).status == 200
            assert await clients[0].stream.receive_some(1) == b""  # the oldest was closed
            nursery.cancel_scope.cancel()
        for client in clients:
            await client.stream.aclose()


async def test_endless_informational_responses_meet_the_deadline() -> None:
    async def early_hints_forever(stream: trio.SocketStream) -> None:
        await read_head(stream)
        while True:
            await stream.send_all(b"HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n")
            await trio.sleep(0.01)

    settings = make_settings(timeouts__upstream_response_s=0.2)
    async with raw_origin(early_hints_forever) as origin, running_proxy(origin, settings) as p:
        with trio.fail_after(10):
            async with Client.connect(p.address) as client:
                reply = await client.request(b"GET", b"/")
    assert reply.status == 504
    assert 0 < len(reply.informational) <= 32


async def test_a_flood_of_informational_responses_is_capped() -> None:
    async def early_hints_flood(stream: trio.SocketStream) -> None:
        await read_head(stream)
        await stream.send_all(b"HTTP/1.1 103 Early Hints\r\n\r\n" * 5000)
        await trio.sleep_forever()

    async with raw_origin(early_hints_flood) as origin, running_proxy(origin) as proxy:
        with trio.fail_after(10):
            async with Client.connect(proxy.address) as client:
                reply = await client.request(b"GET", b"/")
    assert reply.status == 502
    assert len(reply.informational) == 32


async def test_a_client_that_left_while_waiting_for_a_slot_is_never_sent_upstream() -> None:
    async with the_only_slot_held() as held:
        leaver = await _queue_for_the_slot(held, b"/left")
        await leaver.aclose()
        held.release.set()
        await _wait_until(lambda: len(held.proxy.records) == 2)
    assert [h.split(b" ")[1] for h in held.heads] == [b"/first"]
    assert sorted(r.status for r in held.proxy.records) == [200, 499]


async def test_a_rate_floor_ends_with_its_request() -> None:
    """A request that fails after its body went upstream (here: the origin hangs up without
    an answer, a 502) leaves the connection open; its body's rate floor must not follow the
    connection into its idle wait (it would cut it with a 408)."""
    requests = 0

    async def hangs_up_once(stream: trio.SocketStream) -> None:
        nonlocal requests
        head = await read_head(stream)
        requests += 1
        if requests == 1:
            while head.count(b"x") < 100:  # the whole body, then no answer
                head += await stream.receive_some(65536)
            return
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    settings = make_settings(
        timeouts__client_body_s=0.2, limits__min_body_rate_bytes_per_s=1_000_000
    )
    async with raw_origin(hangs_up_once) as origin, running_proxy(origin, settings) as proxy:
        async with Client.connect(proxy.address) as client:
            assert (await client.request(b"POST", b"/", body=b"x" * 100)).status == 502
            await trio.sleep(0.5)  # idle, longer than the floor's grace
            assert (await client.request(b"GET", b"/")).status == 200
