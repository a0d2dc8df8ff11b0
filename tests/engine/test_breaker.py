"""The circuit breaker on the memory network (autojump clock): refused connects open it, then
requests get a 503 with Retry-After without a connect; after the cooldown one probe goes, and
its success closes it. Responses, even 5xx, never count."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing

from trioproxy.engine._collector import ProxyCollector
from trioproxy.engine._transport import Transport

from ..memnet import MemoryNetwork, MemoryStream, ScriptedOrigin, memory_origin, memory_proxy
from ..support import Client, make_settings, read_head

FAST = make_settings(upstream__breaker_failures=3, upstream__breaker_cooldown_s=10.0)


def breaker_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [
        (r.levelname, r.getMessage().split(":")[0])
        for r in caplog.records
        if r.getMessage().startswith("circuit breaker") and r.levelno >= logging.INFO
    ]


async def with_no_origin(client: Client, count: int = 3) -> list[int]:
    """``count`` requests while no origin listens, their statuses: each connect is refused
    (a 502) until the breaker opens (FAST: at the third), then a 503 without a connect."""
    return [(await client.request(b"GET", b"/")).status for _ in range(count)]


async def hangs_forever(family: int, sockaddr: object) -> Transport:
    await trio.sleep_forever()
    raise AssertionError


async def test_refused_connects_open_it_and_then_nothing_is_tried_during_the_cooldown(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    network, origin = MemoryNetwork(), ScriptedOrigin()
    async with memory_proxy(FAST, network) as proxy:
        async with proxy.client() as client:
            refused = await with_no_origin(client)
            async with memory_origin(network, origin):  # back, but the breaker is open
                await trio.sleep(4.5)
                reply = await client.request(b"GET", b"/")
                again = await client.request(b"GET", b"/")
    assert refused == [502, 502, 502]
    assert (reply.status, reply.header(b"retry-after")) == (503, b"6")  # 5.5 s left, up
    assert reply.header(b"connection") is None  # the request was read whole: kept alive
    assert again.status == 503
    assert origin.accepted == 0  # no connect was even tried
    assert [r.status for r in proxy.records] == [502, 502, 502, 503, 503]
    assert breaker_lines(caplog) == [("WARNING", "circuit breaker opened")]
    assert "503 at once" not in caplog.text  # (words of the line checked in the unit tests)


async def test_after_the_cooldown_one_probe_goes_and_its_success_closes_it(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trioproxy")
    network, origin = MemoryNetwork(), ScriptedOrigin()
    async with memory_proxy(FAST, network) as proxy:
        async with proxy.client() as client:
            await with_no_origin(client)
            await trio.sleep(10.0)
            async with memory_origin(network, origin):
                probe = await client.request(b"GET", b"/small")
                after = await client.request(b"GET", b"/small")
        breaker = proxy.server.pool.breaker.state
    assert (probe.status, after.status) == (200, 200)
    assert (breaker.state.value, breaker.opens) == ("closed", 1)
    assert breaker_lines(caplog) == [
        ("WARNING", "circuit breaker opened"),
        ("INFO", "circuit breaker closed"),
    ]


async def test_a_failed_probe_opens_it_for_another_cooldown(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with memory_proxy(FAST) as proxy:
        async with proxy.client() as client:
            await with_no_origin(client)
            await trio.sleep(10.0)
            probe = await client.request(b"GET", b"/")
            refused = await client.request(b"GET", b"/")
    assert probe.status == 502  # the probe tried, and was refused
    assert (refused.status, refused.header(b"retry-after")) == (503, b"10")


async def test_while_the_probe_connects_other_requests_get_503(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    settings = make_settings(upstream__breaker_failures=1, timeouts__upstream_connect_s=5.0)
    async with memory_proxy(settings, network) as proxy:
        async with proxy.client() as client:
            await client.request(b"GET", b"/")  # refused: open
        await trio.sleep(10.0)
        proxy.server.pool._connect_transport = hangs_forever  # a next hop that drops SYNs
        async with proxy.client() as prober, proxy.client() as other:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(prober.request, b"GET", b"/")
                await trio.testing.wait_all_tasks_blocked()
                reply = await other.request(b"GET", b"/")
                nursery.cancel_scope.cancel()
    assert (reply.status, reply.header(b"retry-after")) == (503, b"1")
    assert proxy.server.pool.breaker.state.state.value == "half-open"


async def test_origin_5xx_answers_never_open_it(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()

    async def unhealthy(stream: MemoryStream) -> None:
        while await read_head(stream):
            await stream.send_all(b"HTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nbusy")

    async with memory_origin(network, unhealthy), memory_proxy(FAST, network) as proxy:
        async with proxy.client() as client:
            replies = [await client.request(b"GET", b"/") for _ in range(10)]
    assert {(r.status, r.body) for r in replies} == {(503, b"busy")}
    assert proxy.server.pool.breaker.state.opens == 0


async def test_zero_failures_turns_it_off(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with memory_proxy(make_settings(upstream__breaker_failures=0), network) as proxy:
        async with proxy.client() as client:
            statuses = {(await client.request(b"GET", b"/")).status for _ in range(20)}
    assert statuses == {502}


async def test_metrics_show_the_state_the_openings_and_the_refusals(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with memory_proxy(FAST) as proxy:
        async with proxy.client() as client:
            assert await with_no_origin(client, 5) == [502, 502, 502, 503, 503]
        scalars = {s[1]: s[3] for s in ProxyCollector(proxy.server.ctx).snapshot().scalars}
    assert scalars["trioproxy_upstream_breaker_open"] == 1
    assert scalars["trioproxy_upstream_breaker_opens"] == 1
    assert scalars["trioproxy_upstream_breaker_rejected"] == 2


async def test_connect_timeouts_count_as_failures(autojump_clock: trio.testing.MockClock) -> None:
    settings = make_settings(upstream__breaker_failures=2, timeouts__upstream_connect_s=1.0)
    async with memory_proxy(settings) as proxy:
        proxy.server.pool._connect_transport = hangs_forever  # a next hop that drops SYNs
        async with proxy.client() as client:
            started = trio.current_time()
            timed_out = [(await client.request(b"GET", b"/")).status for _ in range(2)]
            refused = await client.request(b"GET", b"/")
            waited_s = trio.current_time() - started
    assert (timed_out, refused.status) == ([504, 504], 503)
    assert waited_s == pytest.approx(2.0)  # the third waited for nothing
