"""The isolation issue's fairness tests at the engine layer, without sockets, on the autojump
clock: judged by the work done between two yields and by order, never by wall time.

A connection flooding one-byte chunks (either way) moves at most a slice of them between two
yields, one flooding empty lines reads one buffer between two, and another client is served
meanwhile; slow request heads delay nobody. Then what is shared cannot be hoarded: clients
that never send their body or never read hold no upstream connection, and a newcomer at the
connection limit gets the oldest idle slot (from the former e2e/test_abuse.py, on loopback
there). (The cancellation sweeps: `test_cancellation`; the rate floors: `test_ratefloor`.)
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
import trio
import trio.testing

from trioproxy.engine import _exchange, _requestbody, _response
from trioproxy.engine._memory import MemoryNetwork, MemoryTransport
from trioproxy.engine._peer import RECEIVE_SIZE, Peer
from trioproxy.engine._slices import move_data

from ..memnet import (
    MemoryProxy,
    ScriptedOrigin,
    memory_proxy,
    scripted_proxy,
    sent_by_hand,
    wait_until,
)
from ..support import Client

CHUNKS = 12_000  # one-byte chunks in a flood
CHUNKS_PER_SLICE = 64  # trioproxy.engine._slices._EVENTS_PER_SLICE


def chunked_upload(count: int) -> bytes:
    head = b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    return head + b"1\r\nx\r\n" * count + b"0\r\n\r\n"


class SliceMeter(trio.abc.Instrument):
    """The most body bytes (here: one-byte chunks, so h11 events) any task moved between two
    yields, measured at the one function both directions move them with (`move_data`)."""

    def __init__(self) -> None:
        self.this_step = 0
        self.most = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.this_step = 0

    def moved(self, count: int) -> None:
        self.this_step += count
        self.most = max(self.most, self.this_step)


@contextlib.contextmanager
def metering_slices(monkeypatch: pytest.MonkeyPatch) -> Iterator[SliceMeter]:
    meter = SliceMeter()

    def metered(source: Peer, sink: Peer) -> tuple[object, int]:
        event, moved = move_data(source, sink)
        meter.moved(moved)
        return event, moved

    monkeypatch.setattr(_requestbody, "move_data", metered)
    monkeypatch.setattr(_response, "move_data", metered)
    monkeypatch.setattr(_exchange, "move_data", metered)  # (a response's first slice)
    trio.lowlevel.add_instrument(meter)
    try:
        yield meter
    finally:
        trio.lowlevel.remove_instrument(meter)


async def flood_beside_another_client(
    flood: Callable[[MemoryProxy], Awaitable[None]], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, int, MemoryProxy]:
    """Run ``flood`` on one connection while another client sends requests; return the most
    one-byte chunks a task moved without yielding, how many requests the other client got
    answered before the flood ended, and the proxy. The whole flood fits the pipes: the
    proxy always has a full 64 KiB read (about ten thousand chunks) waiting."""
    network = MemoryNetwork(capacity=1 << 20)
    async with memory_proxy(network=network, origin=ScriptedOrigin()) as proxy:
        done = trio.Event()
        served = 0
        with metering_slices(monkeypatch) as meter, trio.fail_after(60):
            async with trio.open_nursery() as nursery:

                async def other() -> None:
                    nonlocal served
                    served = await proxy.requests_until(done)

                async def flooding() -> None:
                    await flood(proxy)
                    done.set()

                nursery.start_soon(other)
                nursery.start_soon(flooding)
        return meter.most, served, proxy


def answered_before(proxy: MemoryProxy, target: bytes) -> int:
    """How many other requests were logged (answered) before the one for ``target``."""
    targets = [record.target for record in proxy.records]
    return targets.index(target)


async def test_a_one_byte_chunk_upload_is_sliced_and_another_client_is_served(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def upload(proxy: MemoryProxy) -> None:
        stream = proxy.open()
        async with stream:
            await stream.send_all(chunked_upload(CHUNKS))
            client = Client(stream)
            sent_by_hand(client, b"POST", b"/upload", chunked=True)
            reply = await client.read_reply()
            assert (reply.status, reply.body) == (200, b"%d" % CHUNKS)

    most, served, proxy = await flood_beside_another_client(upload, monkeypatch)
    assert most == CHUNKS_PER_SLICE  # a slice at most between two yields
    assert served >= 10
    assert answered_before(proxy, b"/upload") >= 10


async def test_a_one_byte_chunk_download_is_sliced_and_another_client_is_served(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def download(proxy: MemoryProxy) -> None:
        async with proxy.client() as client:
            reply = await client.request(b"GET", b"/chunks/%d" % CHUNKS)
            assert reply.body == b"x" * CHUNKS

    most, served, proxy = await flood_beside_another_client(download, monkeypatch)
    assert most == CHUNKS_PER_SLICE
    assert served >= 10
    assert answered_before(proxy, b"/chunks/%d" % CHUNKS) >= 10


class ReadMeter(trio.abc.Instrument):
    """The most bytes the proxy read from one client (by its address) between two yields."""

    def __init__(self, peer_ip: str) -> None:
        self.peer_ip = peer_ip
        self.this_step = 0
        self.most = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.this_step = 0

    def read(self, transport: MemoryTransport, data: bytes | None) -> None:
        if data and transport.peer_ip == self.peer_ip:
            self.this_step += len(data)
            self.most = max(self.most, self.this_step)


async def test_a_flood_of_empty_lines_is_read_a_buffer_per_step_and_others_are_served(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Empty lines before a request are skipped (RFC 9112 2.2), without end if a client
    wishes, until the head deadline: always ready to read, the connection must still yield
    after each read."""
    flooder = "203.0.113.66"
    meter = ReadMeter(flooder)
    real_read = MemoryTransport.read_nowait

    def metered(transport: MemoryTransport, max_bytes: int) -> bytes | None:
        data = real_read(transport, max_bytes)
        meter.read(transport, data)
        return data

    monkeypatch.setattr(MemoryTransport, "read_nowait", metered)
    network = MemoryNetwork(capacity=1 << 20)
    async with memory_proxy(network=network, origin=ScriptedOrigin()) as proxy:
        flood = proxy.open(flooder)
        done = trio.Event()
        served = 0
        trio.lowlevel.add_instrument(meter)
        try:
            async with flood, trio.open_nursery() as nursery:

                async def flooding() -> None:
                    for _ in range(4):  # 4 MiB of CRLF, then a request
                        await flood.send_all(b"\r\n" * (1 << 19))
                    await flood.send_all(b"GET /small HTTP/1.1\r\nHost: x\r\n\r\n")
                    client = Client(flood)
                    sent_by_hand(client, b"GET", b"/small")
                    assert (await client.read_reply()).status == 200
                    done.set()

                async def other() -> None:
                    nonlocal served
                    served = await proxy.requests_until(done)

                nursery.start_soon(flooding)
                nursery.start_soon(other)
        finally:
            trio.lowlevel.remove_instrument(meter)
    assert meter.most == RECEIVE_SIZE  # one read, then a yield
    assert served >= 5


async def test_slow_request_heads_delay_nobody_and_meet_their_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Fifty connections each hold half a request head (slowloris); another client is
    answered at once, in virtual time zero, and each slow one gets its 408 at the deadline."""
    async with scripted_proxy(timeouts__client_header_s=10.0) as (proxy, _origin):
        slow = [proxy.open() for _ in range(50)]
        for stream in slow:
            await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Half: ")
        await trio.testing.wait_all_tasks_blocked()
        started = trio.current_time()
        async with proxy.client() as client:
            assert (await client.request(b"GET", b"/small")).status == 200
        assert trio.current_time() == started
        for stream in slow:
            with trio.fail_after(15):
                answer = await stream.receive_some(65536)
            assert answer.startswith(b"HTTP/1.1 408 ")
            await stream.aclose()
        assert 10.0 <= trio.current_time() - started < 11.0
        await wait_until(lambda: proxy.server.ctx.stats.connections_open == 0)
        proxy.check_no_leak()
    assert sorted(r.status for r in proxy.records) == [200] + [408] * 50


# --- Hoarding what is shared (from the former e2e/test_abuse.py, on loopback there) --------------


@contextlib.asynccontextmanager
async def attackers(proxy: MemoryProxy, sends: list[bytes]) -> AsyncIterator[None]:
    """A connection per item of ``sends``, each sending it and nothing more, open for the
    block (none of them reads)."""
    async with contextlib.AsyncExitStack() as stack:
        for data in sends:
            stream = await stack.enter_async_context(proxy.open())
            await stream.send_all(data)
        yield


async def test_clients_that_never_send_their_body_hold_no_upstream_connection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Expect: 100-continue and never the body, or a body cut short: the proxy holds such
    requests itself; the pool stays empty and a normal request is answered."""
    async with scripted_proxy(upstream__pool_size=2, timeouts__pool_wait_s=30) as (proxy, _origin):
        unfinished = []
        for i in range(9):
            expect = b"Expect: 100-continue\r\n" if i % 2 else b""
            framing = b"Transfer-Encoding: chunked" if i % 3 == 2 else b"Content-Length: 1000"
            body = b"64\r\n" + b"y" * 50 if i % 3 == 2 else b"y" * (i * 100)
            head = b"POST / HTTP/1.1\r\nHost: x\r\n" + framing + b"\r\n" + expect + b"\r\n"
            unfinished.append(head + body)
        async with attackers(proxy, unfinished):
            await trio.testing.wait_all_tasks_blocked()
            assert proxy.server.pool.open_count == 0
            with trio.fail_after(5):  # the pool would make it wait pool_wait_s (30 s)
                async with proxy.client() as client:
                    assert (await client.request(b"GET", b"/small")).status == 200


async def test_clients_that_never_read_release_the_upstream_connection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A response that fits the buffer is read whole and the connection goes back to the
    pool, however slowly (here: never) the client reads it."""
    async with scripted_proxy() as (proxy, _origin):
        # Pipelined: the second response waits for the client to read the first.
        async with attackers(proxy, [b"GET /big/40000 HTTP/1.1\r\nHost: x\r\n\r\n" * 30] * 6):
            pool = proxy.server.pool
            with trio.fail_after(10):
                await wait_until(lambda: pool.open_count and pool.idle_count == pool.open_count)
                async with proxy.client() as client:
                    assert (await client.request(b"GET", b"/small")).status == 200


async def test_a_newcomer_gets_a_slot_from_the_oldest_idle_connection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The attacker keeps all but its oldest connection busy; the newcomer gets a slot."""
    async with scripted_proxy(limits__max_connections=3, timeouts__client_idle_s=60) as (
        proxy,
        _origin,
    ):
        async with trio.open_nursery() as nursery:
            clients: list[Client] = []
            for _ in range(3):
                client = Client(proxy.open())
                clients.append(client)
                assert (await client.request(b"GET", b"/small")).status == 200

            async def refresh(client: Client) -> None:
                while True:
                    await trio.sleep(0.2)
                    assert (await client.request(b"GET", b"/small")).status == 200

            for client in clients[1:]:
                nursery.start_soon(refresh, client)
            with trio.fail_after(5):  # idle connections last client_idle_s (60 s)
                async with proxy.client() as newcomer:
                    assert (await newcomer.request(b"GET", b"/small")).status == 200
            assert await clients[0].stream.receive_some(1) == b""  # the oldest was closed
            nursery.cancel_scope.cancel()
        for client in clients:
            await client.stream.aclose()
