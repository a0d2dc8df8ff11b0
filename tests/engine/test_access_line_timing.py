"""When an exchange's access line is handed to the sink (`Downstream.log_unlogged`): held
while the connection's next request, already there, goes upstream, then made while that
origin answers; never held across a wait for a request, an idle keep-alive, a tunnel or the
connection's end. One line per request, in order, none lost."""

from __future__ import annotations

import trio
import trio.testing

from ..memnet import scripted_proxy, sent_by_hand, wait_until

UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
)


def get(target: bytes) -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % target


async def test_pipelined_requests_get_one_line_each_in_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    targets = [b"/small", b"/slow/2", b"/small", b"/big/70000", b"/nothing-here", b"/small"]
    async with scripted_proxy() as (proxy, _origin):
        async with proxy.client() as client:
            await client.stream.send_all(b"".join(get(t) for t in targets))
            for target in targets:
                sent_by_hand(client, b"GET", target)
                assert (await client.read_reply()).status == 200
        await proxy.settled()
        assert [r.target for r in proxy.records] == targets


async def test_an_idle_keep_alive_connection_holds_no_line(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scripted_proxy() as (proxy, _origin):
        async with proxy.client() as client:
            for count in (1, 2):
                reply = await client.request(b"GET", b"/small")
                asked = trio.current_time()
                await proxy.logged(count)  # not at the keep-alive timeout: no time passes
                assert trio.current_time() == asked and reply.status == 200


async def test_the_line_before_is_made_while_the_next_request_waits_for_its_origin(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scripted_proxy() as (proxy, origin):
        async with proxy.open() as stream:
            await stream.send_all(get(b"/small") + get(b"/slow/30"))
            await wait_until(lambda: origin.targets == [b"/small", b"/slow/30"])
            assert trio.current_time() < 1.0
            assert [r.target for r in proxy.records] == [b"/small"]


async def test_the_line_before_an_upgrade_is_made_while_the_tunnel_is_open(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scripted_proxy() as (proxy, origin):
        async with proxy.open() as stream:
            await stream.send_all(get(b"/small") + UPGRADE)
            await wait_until(lambda: origin.targets == [b"/small", b"/ws"])
            await trio.testing.wait_all_tasks_blocked()
            assert [r.target for r in proxy.records] == [b"/small"]  # the tunnel's: at its end


async def test_a_connection_cut_by_the_drain_loses_no_line(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scripted_proxy() as (proxy, origin):
        stream = proxy.open()
        await stream.send_all(get(b"/small") + get(b"/slow/600"))
        await wait_until(lambda: b"/slow/600" in origin.targets)
        proxy.server.shutdown()  # the slow one outlives drain_s: cancelled
        await proxy.stopped()
        assert [r.target for r in proxy.records] == [b"/small", b"/slow/600"]
        await stream.aclose()
