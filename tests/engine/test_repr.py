"""State you can see: the reprs of the pool, the connections on both sides and the exchange,
as test failures and debug lines show them (httpcore's pool repr is the model)."""

from __future__ import annotations

import trio
import trio.testing

from trioproxy.core._accesslog import AccessRecord
from trioproxy.core._errors import ClientError
from trioproxy.engine._exchange import Exchange, Responder
from trioproxy.engine._h11 import h11
from trioproxy.engine._memory import memory_transport_pair
from trioproxy.engine._peer import Downstream, UpstreamConnection

from ..memnet import (
    in_flight,
    memory_proxy,
    scripted_proxy,
    wait_until,
)


async def test_the_pool_shows_requests_active_and_queued_and_connections_active_and_idle(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scripted_proxy(upstream__max_connections=1, timeouts__pool_wait_s=30.0) as (
        proxy,
        origin,
    ):
        pool = proxy.server.pool
        assert repr(pool) == (
            "<UpstreamPool [requests: 0 active, 0 queued | connections: 0 active, 0 idle]>"
        )
        async with proxy.client() as holder, proxy.client() as waiter:
            await in_flight(holder, origin, b"/slow/5")
            await waiter.stream.send_all(b"GET /small HTTP/1.1\r\nHost: x\r\n\r\n")
            await wait_until(lambda: pool.waiting_count == 1)
            assert repr(pool) == (
                "<UpstreamPool [requests: 1 active, 1 queued | connections: 1 active, 0 idle]>"
            )
            assert (await holder.read_reply()).status == 200
            assert (await waiter.read_reply()).status == 200
            await proxy.logged(2)
        assert repr(pool) == (
            "<UpstreamPool [requests: 0 active, 0 queued | connections: 0 active, 1 idle]>"
        )


async def test_a_connection_shows_its_peer_its_h11_states_and_its_byte_counts() -> None:
    ours, theirs = memory_transport_pair(ips=("203.0.113.9", "192.0.2.80"))
    down = Downstream(ours, h11.Connection(h11.SERVER))
    down.closing = True
    assert repr(down) == (
        "<Downstream [client 192.0.2.80, closing | ours IDLE, theirs IDLE"
        " | sent 0, received 0, queued 0 bytes]>"
    )
    up = UpstreamConnection(theirs, h11.Connection(h11.CLIENT), "203.0.113.9:80")
    up.uses = 2
    up.queue(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    assert repr(up) == (
        "<UpstreamConnection [203.0.113.9:80, use 2 | ours SEND_BODY, theirs SEND_RESPONSE"
        " | sent 0, received 0, queued 27 bytes]>"
    )
    up.close()
    assert repr(up) == (
        "<UpstreamConnection [203.0.113.9:80, use 2 | closed | sent 0, received 0,"
        " queued 27 bytes]>"
    )


async def test_an_exchange_shows_its_request_its_upstream_and_its_status(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with memory_proxy() as proxy:
        ours, _ = memory_transport_pair(ips=("127.0.0.1", "198.51.100.7"))
        down = Downstream(ours, h11.Connection(h11.SERVER))
        request = h11.Request(method="GET", target="/a?b=1", headers=[("Host", "x")])
        ex = Exchange(down, proxy.server.ctx, request)
        assert repr(ex) == "<Exchange [GET /a?b=1 from 198.51.100.7 | status -]>"
        ex.up = UpstreamConnection(memory_transport_pair()[0], h11.Connection(h11.CLIENT), "o:80")
        ex.record.status = 200
        assert repr(ex) == "<Exchange [GET /a?b=1 from 198.51.100.7 | upstream o:80 | status 200]>"
        record = AccessRecord(start_wall=0.0, peer="198.51.100.7")
        rejected = Responder(down, proxy.server.ctx, record)
        await rejected.answer_error(ClientError("bad"))
        assert repr(rejected) == "<Responder [an unreadable head from 198.51.100.7 | status 400]>"
