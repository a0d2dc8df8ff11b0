"""`OriginWaits` on real sockets: a response head awaited past the client-watch mark (the
reaper's wake, trio's notify_closing on an fd left open) still arrives whole, 1xx included,
on a reused upstream connection; a client gone meanwhile gets its 499 at the mark."""

from __future__ import annotations

import trio

from ..memnet import wait_until
from ..support import make_settings, read_head, running_proxy


async def _slow_origin(stream: trio.SocketStream) -> None:
    """Answers each request head after the delay its target names (/slow/<s>[/1xx])."""
    while head := await read_head(stream):
        target = head.split(b" ", 2)[1]
        parts = target.split(b"/")
        delay = float(parts[2])
        if len(parts) > 3:  # a 1xx at half time, the final answer at the end
            await trio.sleep(delay / 2)
            await stream.send_all(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n")
            await trio.sleep(delay / 2)
        else:
            await trio.sleep(delay)
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


async def test_slow_answers_past_the_mark_arrive_whole_on_one_upstream_connection() -> None:
    with trio.fail_after(20):
        async with running_proxy(_slow_origin) as proxy, proxy.client() as client:
            replies = [await client.request(b"GET", t) for t in (b"/slow/1.4", b"/slow/0.1")]
            replies.append(await client.request(b"GET", b"/slow/2.6/1xx"))
            replies.append(await client.request(b"GET", b"/slow/1.2"))
        assert [(r.status, r.body) for r in replies] == [(200, b"ok")] * 4
        assert [i.status_code for i in replies[2].informational] == [103]
        assert proxy.server.pool.stats.opened == 1  # every woken wait left it open and whole
        assert len(proxy.server.ctx.origin_waits) == 0


async def test_many_clients_gone_before_the_mark_get_499_at_the_mark() -> None:
    settings = make_settings(timeouts__upstream_response_s=30.0)
    with trio.fail_after(20):
        async with running_proxy(_slow_origin, settings) as proxy:
            started = trio.current_time()

            async def leave() -> None:
                stream = await trio.open_tcp_stream(*proxy.address)
                await stream.send_all(b"GET /slow/60 HTTP/1.1\r\nHost: x\r\n\r\n")
                await trio.sleep(0.2)
                await stream.aclose()

            async with trio.open_nursery() as nursery:
                for _ in range(20):
                    nursery.start_soon(leave)
            await wait_until(lambda: len(proxy.records) == 20)
            took = trio.current_time() - started
        assert [r.status for r in proxy.records] == [499] * 20
        assert 1.0 <= took < 2.5
        assert len(proxy.server.ctx.origin_waits) == 0


async def test_a_silent_origin_gets_504_at_the_deadline_on_tcp() -> None:
    settings = make_settings(timeouts__upstream_response_s=2.5)
    with trio.fail_after(20):
        async with running_proxy(_slow_origin, settings) as proxy, proxy.client() as client:
            started = trio.current_time()
            reply = await client.request(b"GET", b"/slow/60")
            took = trio.current_time() - started
        assert reply.status == 504
        assert 2.5 <= took < 3.5
