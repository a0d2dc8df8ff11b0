"""The isolation issue's cancellation tests at the engine layer, without sockets, on the
autojump clock: a run of varied exchanges (bodies and responses streamed, a slow answer,
pipelining, 100-continue, a tunnel) is cut at every few scheduler steps, or at every moment of
virtual time: clients reset or leaving, origin connections reset, the server cancelled or
drained. Afterwards nothing is left behind: no upstream connection the pool does not count,
no task, and exactly one access record per request started.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping

import h11
import pytest
import trio
import trio.testing

from trioproxy.config._settings import Settings
from trioproxy.engine._memory import MemoryNetwork

from ..memnet import (
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


async def sweep_points() -> range:
    """The scheduler steps a sweep acts at: about SWEEP_RUNS of them over a whole run of
    `exchanges`, and a few past its end."""
    network = MemoryNetwork(capacity=4096)
    async with memory_origin(network, ScriptedOrigin()):
        with counting_steps() as counter:
            async with memory_proxy(CANCEL_SETTINGS, network) as proxy:
                await exchanges(proxy, [])
    assert sorted(r.status for r in proxy.records) == [101] + [200] * 6
    return sweep_over(counter.total)


def sweep_over(total_steps: int) -> range:
    return range(1, total_steps + 20, max(1, total_steps // SWEEP_RUNS))


async def run_with_clients_reset(
    at: int, settings: Settings = CANCEL_SETTINGS, hooks: Mapping[str, object] | None = None
) -> MemoryProxy:
    """A run of `exchanges` whose client connections are all reset as the ``at``-th scheduler
    step begins; then nothing may be left behind, and every request has one record."""
    streams: list[MemoryStream] = []

    def reset_clients() -> None:
        for stream in streams:
            stream.reset()

    network = MemoryNetwork(capacity=4096)
    async with memory_proxy(settings, network, origin=ScriptedOrigin(), hooks=hooks) as proxy:
        with counting_steps(at, reset_clients), trio.fail_after(60):
            await exchanges(proxy, streams)
            await proxy.settled()
        proxy.check_no_leak()
        check_one_record_per_request(proxy)
    return proxy


async def run_with_clients_leaving(
    at_s: float, prepare: Callable[[MemoryProxy], object] | None = None, settle_s: float = 60
) -> MemoryProxy:
    """A run of `exchanges` (after ``prepare(proxy)``) whose clients leave ``at_s`` into it
    (their own deadline cancels them, and they close); then, settled within ``settle_s``,
    nothing may be left behind, and every request has one record."""
    network = MemoryNetwork(capacity=4096)
    async with memory_proxy(CANCEL_SETTINGS, network, origin=ScriptedOrigin()) as proxy:
        if prepare is not None:
            prepare(proxy)
        with trio.move_on_at(trio.current_time() + at_s):
            await exchanges(proxy, [])
        with trio.fail_after(settle_s):
            await proxy.settled()
        proxy.check_no_leak()
        check_one_record_per_request(proxy)
    return proxy


async def run_with_server_cancelled(
    at: int,
    settings: Settings = CANCEL_SETTINGS,
    hooks: Mapping[str, object] | None = None,
    prepare: Callable[[MemoryProxy], object] | None = None,
) -> MemoryProxy | None:
    """A run of `exchanges` with the proxy (and its clients) cancelled as the ``at``-th
    scheduler step begins: then every upstream connection is closed (the origin saw each
    close), the pool counts none, no handler task is left, and every request that started
    was logged once. None if it was cancelled while it started: nothing to check."""
    network = MemoryNetwork(capacity=4096)
    origin = ScriptedOrigin()
    started: list[MemoryProxy] = []
    async with memory_origin(network, origin):
        with trio.CancelScope() as scope, counting_steps(at, scope.cancel):
            async with memory_proxy(settings, network, hooks=hooks) as proxy:
                started.append(proxy)
                if prepare is not None:
                    prepare(proxy)
                await exchanges(proxy, [])
        if not started:
            return None
        proxy = started[0]
        assert proxy.upstream_open == proxy.server.pool.open_count == 0
        assert proxy.server.ctx.stats.connections_open == 0
        assert handler_tasks() == 0
        assert len(proxy.records) == proxy.server.ctx.stats.requests
        await wait_until(lambda: origin.open == 0)
    return proxy


async def test_clients_reset_at_every_point_of_their_exchanges_leave_nothing_behind(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Both client connections are reset (as by a client that crashed) as the N-th scheduler
    step begins, for N over a whole run."""
    outcomes = set()
    for at in await sweep_points():
        proxy = await run_with_clients_reset(at)
        outcomes.add(len(proxy.records))
    assert len(outcomes) > 3  # the resets fell at many different points


async def test_clients_leaving_at_every_moment_of_their_exchanges_leave_nothing_behind(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The clients' own deadline (a scope that cancels them, and they close) at each
    virtual time over a run: while waiting for a slow head, mid-body, between requests."""
    outcomes = set()
    for fifth in range(30):
        proxy = await run_with_clients_leaving(fifth / 5)
        outcomes.add(tuple(r.status for r in proxy.records))
    assert any(sorted(statuses) == [101] + [200] * 6 for statuses in outcomes)
    assert any(499 in statuses for statuses in outcomes)


async def test_origin_connections_reset_at_every_point_leave_nothing_behind(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Every upstream connection open is reset by the origin as the N-th scheduler step
    begins: each request still gets an answer (a 502 at worst), nothing is left behind, and
    nothing is logged as an internal error."""
    outcomes = set()
    for at in await sweep_points():
        network = MemoryNetwork(capacity=4096)
        origin = ScriptedOrigin()
        streams: list[MemoryStream] = []

        async def handler(
            stream: MemoryStream,
            origin: ScriptedOrigin = origin,
            streams: list[MemoryStream] = streams,
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
    outcomes = set()
    for at in await sweep_points():
        if (proxy := await run_with_server_cancelled(at)) is not None:
            outcomes.add(len(proxy.records))
    assert len(outcomes) > 3
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == []


async def test_a_drain_begun_at_every_point_finishes_every_exchange_and_leaves_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """``shutdown()`` as the N-th scheduler step begins: the exchanges in flight finish (the
    run is far shorter than timeouts.drain_s), idle connections close, and afterwards no
    connection, pool slot or task is left, with one access record per request started."""
    outcomes = set()
    for at in await sweep_points():
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
