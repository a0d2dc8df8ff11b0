"""The isolation issue's fairness and cancellation tests at the engine layer, without sockets,
on the autojump clock: judged by order, step counts and counts of what is open, never by
wall time.

Fairness: a connection flooding one-byte chunks (either way) yields at least once per slice
of events and another client is served while it lasts; slow request heads delay nobody.
Cancellation: a client that goes away, a deadline, or the whole server cancelled at every
point of an exchange leaves nothing behind: no upstream connection the pool does not count,
no task, and exactly one access record per request started.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator

import h11
import pytest
import trio
import trio.testing

from trioproxy.engine import _requestbody, _response
from trioproxy.engine._peer import RECEIVE_SIZE, Peer
from trioproxy.engine._slices import move_data
from trioproxy.engine._transport import MemoryTransport

from ..memnet import (
    MemoryNetwork,
    MemoryProxy,
    MemoryStream,
    ScriptedOrigin,
    counting_steps,
    handler_tasks,
    memory_origin,
    memory_proxy,
    sent_by_hand,
    wait_until,
)
from ..support import Client, Reply, make_settings

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
    async with memory_origin(network, ScriptedOrigin()), memory_proxy(network=network) as proxy:
        done = trio.Event()
        served = 0
        with metering_slices(monkeypatch) as meter, trio.fail_after(60):
            async with trio.open_nursery() as nursery:

                async def other() -> None:
                    nonlocal served
                    async with proxy.client() as client:
                        while not done.is_set():
                            assert (await client.request(b"GET", b"/small")).status == 200
                            served += 1

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
    async with memory_origin(network, ScriptedOrigin()), memory_proxy(network=network) as proxy:
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
                    async with proxy.client() as client:
                        while not done.is_set():
                            assert (await client.request(b"GET", b"/small")).status == 200
                            served += 1

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
    network = MemoryNetwork()
    settings = make_settings(timeouts__client_header_s=10.0)
    async with memory_origin(network, ScriptedOrigin()), memory_proxy(settings, network) as proxy:
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


# --- Cancellation at every point -------------------------------------------------------------

# An exchange of each kind on one keep-alive connection, and a second client beside it: a body
# streamed past the request buffer, a response streamed past the response buffer, and a slow
# answer (past the client watch's start, then a body dripping in); the second client shares
# the pool.
# The upstream name is looked up again at every use (dns_ttl_s = 0): lookups start at every
# point too.
CANCEL_SETTINGS = make_settings(
    limits__request_buffer_bytes=1024,
    limits__response_buffer_bytes=4096,
    upstream__dns_ttl_s=0.0,
)
# Runs per sweep: every few scheduler steps of a whole run (~270 steps); a run takes a few
# milliseconds.
SWEEP_RUNS = 45
# What a client sees when the proxy (or the test) cuts its connection.
GONE = (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError)


def answered(reply: Reply, body: bytes) -> None:
    """The right answer, or a 502 when the origin's connection was reset under it."""
    assert reply.status == 502 or (reply.status, reply.body) == (200, body)


async def exchanges(proxy: MemoryProxy, streams: list[MemoryStream]) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_busy_client, proxy, streams)
        nursery.start_soon(_second_client, proxy, streams)
        nursery.start_soon(_tunnel_client, proxy, streams)


async def _busy_client(proxy: MemoryProxy, streams: list[MemoryStream]) -> None:
    stream = proxy.open()
    streams.append(stream)
    async with stream:
        with contextlib.suppress(*GONE):
            client = Client(stream)
            reply = await client.request(b"POST", b"/upload", body=b"u" * 20_000)
            answered(reply, b"20000")
            reply = await client.request(b"GET", b"/big/30000")
            answered(reply, b"b" * 30_000)
            reply = await client.request(b"GET", b"/drip/3")
            answered(reply, b"d" * 3000)


async def _second_client(proxy: MemoryProxy, streams: list[MemoryStream]) -> None:
    """Two pipelined requests, then a body announced with Expect: 100-continue (larger than
    the buffer: the origin decides) sent without waiting for the 100."""
    stream = proxy.open()
    streams.append(stream)
    async with stream:
        with contextlib.suppress(*GONE):
            client = Client(stream)
            await stream.send_all(b"GET /small HTTP/1.1\r\nHost: x\r\n\r\n" * 2)
            for _ in range(2):
                sent_by_hand(client, b"GET", b"/small")
                answered(await client.read_reply(), b"ok")
            expect = [(b"Expect", b"100-continue")]
            reply = await client.request(b"POST", b"/upload", expect, body=b"e" * 5000)
            answered(reply, b"5000")


async def _tunnel_client(proxy: MemoryProxy, streams: list[MemoryStream]) -> None:
    """An upgrade, then 10 kB sent and a half-close while the echo is read."""
    stream = proxy.open()
    streams.append(stream)
    received = b""

    async def send() -> None:
        with contextlib.suppress(*GONE):
            await stream.send_all(b"x" * 10_000)
            await stream.send_eof()

    async with stream, trio.open_nursery() as nursery:
        with contextlib.suppress(*GONE):
            await stream.send_all(
                b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            )
            while b"\r\n\r\n" not in received:
                data = await stream.receive_some(65536)
                if not data:
                    return
                received += data
            head, received = received.split(b"\r\n\r\n", 1)
            if not head.startswith(b"HTTP/1.1 101 "):
                assert head.startswith(b"HTTP/1.1 502 ")  # the origin's connection was reset
                return
            nursery.start_soon(send)
            while data := await stream.receive_some(65536):
                received += data
            assert received == b"X" * len(received)  # all of it, unless the tunnel was cut


def check_one_record_per_request(proxy: MemoryProxy) -> None:
    assert len(proxy.records) == proxy.server.ctx.stats.requests
    assert all(record.status for record in proxy.records)


async def steps_of_a_whole_run() -> int:
    network = MemoryNetwork(capacity=4096)
    async with memory_origin(network, ScriptedOrigin()):
        with counting_steps() as counter:
            async with memory_proxy(CANCEL_SETTINGS, network) as proxy:
                await exchanges(proxy, [])
    assert sorted(r.status for r in proxy.records) == [101] + [200] * 6
    return counter.total


async def test_clients_reset_at_every_point_of_their_exchanges_leave_nothing_behind(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Both client connections are reset (as by a client that crashed) as the N-th scheduler
    step begins, for N over a whole run."""
    total = await steps_of_a_whole_run()
    outcomes = set()
    for at in range(1, total + 20, max(1, total // SWEEP_RUNS)):
        network = MemoryNetwork(capacity=4096)
        streams: list[MemoryStream] = []

        def reset_clients(streams: list[MemoryStream] = streams) -> None:
            for stream in streams:
                stream.reset()

        async with memory_origin(network, ScriptedOrigin()):
            async with memory_proxy(CANCEL_SETTINGS, network) as proxy:
                with counting_steps(at, reset_clients), trio.fail_after(60):
                    await exchanges(proxy, streams)
                    await proxy.settled()
                proxy.check_no_leak()
                check_one_record_per_request(proxy)
                outcomes.add(len(proxy.records))
    assert len(outcomes) > 3  # the resets fell at many different points


async def test_clients_leaving_at_every_moment_of_their_exchanges_leave_nothing_behind(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The clients' own deadline (a scope that cancels them, and they close) at each
    virtual time over a run: while waiting for a slow head, mid-body, between requests."""
    outcomes = set()
    for fifth in range(30):
        network = MemoryNetwork(capacity=4096)
        async with memory_origin(network, ScriptedOrigin()):
            async with memory_proxy(CANCEL_SETTINGS, network) as proxy:
                with trio.move_on_at(trio.current_time() + fifth / 5):
                    await exchanges(proxy, [])
                with trio.fail_after(60):
                    await proxy.settled()
                proxy.check_no_leak()
                check_one_record_per_request(proxy)
                outcomes.add(tuple(r.status for r in proxy.records))
    assert any(sorted(statuses) == [101] + [200] * 6 for statuses in outcomes)
    assert any(499 in statuses for statuses in outcomes)


async def test_origin_connections_reset_at_every_point_leave_nothing_behind(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Every upstream connection open is reset by the origin as the N-th scheduler step
    begins: each request still gets an answer (a 502 at worst), nothing is left behind, and
    nothing is logged as an internal error."""
    total = await steps_of_a_whole_run()
    outcomes = set()
    for at in range(1, total + 20, max(1, total // SWEEP_RUNS)):
        network = MemoryNetwork(capacity=4096)
        origin = ScriptedOrigin()
        streams: list[MemoryStream] = []

        async def handler(
            stream: MemoryStream, origin: ScriptedOrigin = origin, streams: list = streams
        ) -> None:
            streams.append(stream)
            await origin(stream)

        def reset_origin(streams: list[MemoryStream] = streams) -> None:
            for stream in streams:
                stream.reset()

        async with memory_origin(network, handler):
            async with memory_proxy(CANCEL_SETTINGS, network) as proxy:
                with counting_steps(at, reset_origin), trio.fail_after(60):
                    await exchanges(proxy, [])
                    await proxy.settled()
                proxy.check_no_leak()
                check_one_record_per_request(proxy)
                statuses = tuple(sorted(record.status for record in proxy.records))
                assert set(statuses) <= {101, 200, 502}
                outcomes.add(statuses)
    assert len(outcomes) > 3 and any(502 in statuses for statuses in outcomes)
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == []


async def test_the_server_cancelled_at_every_point_leaves_no_connection_and_no_task(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The proxy (and its clients) cancelled as the N-th scheduler step begins: every
    upstream connection is closed, the pool counts none, no handler task is left, every
    request that started was logged once, and nothing was logged as an internal error (the
    resolver's nursery goes before the pool closes: a connection given back or taken in
    between must not ask it for a lookup)."""
    total = await steps_of_a_whole_run()
    outcomes = set()
    for at in range(1, total + 20, max(1, total // SWEEP_RUNS)):
        network = MemoryNetwork(capacity=4096)
        origin = ScriptedOrigin()
        started: list[MemoryProxy] = []
        async with memory_origin(network, origin):
            with trio.CancelScope() as scope, counting_steps(at, scope.cancel):
                async with memory_proxy(CANCEL_SETTINGS, network) as proxy:
                    started.append(proxy)
                    await exchanges(proxy, [])
            if not started:
                continue  # cancelled while it started: nothing to check
            proxy = started[0]
            assert proxy.upstream_open == proxy.server.pool.open_count == 0
            assert proxy.server.ctx.stats.connections_open == 0
            assert handler_tasks() == 0
            assert len(proxy.records) == proxy.server.ctx.stats.requests
            await wait_until(lambda origin=origin: origin.open == 0)  # it saw every one close
            outcomes.add(len(proxy.records))
    assert len(outcomes) > 3
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == []


async def test_a_drain_begun_at_every_point_finishes_every_exchange_and_leaves_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """``shutdown()`` as the N-th scheduler step begins: the exchanges in flight finish (the
    run is far shorter than timeouts.drain_s), idle connections close, and afterwards no
    connection, pool slot or task is left, with one access record per request started."""
    total = await steps_of_a_whole_run()
    outcomes = set()
    for at in range(1, total + 20, max(1, total // SWEEP_RUNS)):
        network = MemoryNetwork(capacity=4096)
        async with memory_origin(network, ScriptedOrigin()):
            async with memory_proxy(CANCEL_SETTINGS, network) as proxy:
                with counting_steps(at, proxy.server.shutdown), trio.fail_after(100):
                    await exchanges(proxy, [])
                    await proxy.stopped()
                assert proxy.upstream_open == proxy.server.pool.open_count == 0
                assert handler_tasks() == 0
                check_one_record_per_request(proxy)
                statuses = sorted(record.status for record in proxy.records)
                assert set(statuses) <= {101, 200}  # nothing in flight was cut short
                outcomes.add(len(statuses))
    assert len(outcomes) > 3
