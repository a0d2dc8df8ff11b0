"""TCP urgent data (MSG_OOB), which only a real socket can send: a byte of it from a client
waiting for an upstream connection does not make the proxy hold the slot for it.

(The one test of the former e2e/test_abuse.py that needs a socket; the rest of that suite
runs on the memory network: hoarding in engine/test_isolation.py, the rate floors in
engine/test_ratefloor.py. Its floods, endless 1xx and a client leaving while waiting for a
slot are the same as engine tests that assert more, and were merged into them:
test_isolation's one-byte-chunk floods, test_exchange's 1xx cap and deadline, test_pool's
client that left while waiting.)
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio
import trio.testing

from ..memnet import wait_until
from ..support import Client, RunningProxy, make_settings, raw_origin, read_head, running_proxy


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
            await wait_until(lambda: heads)
            yield HeldSlot(proxy, first, heads, release)
            await first.stream.aclose()


async def test_an_urgent_byte_from_a_waiting_client_does_not_hold_the_slot() -> None:
    async with the_only_slot_held() as held:
        waiting = await trio.open_tcp_stream(*held.proxy.address)
        await waiting.send_all(b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n")
        await wait_until(lambda: held.proxy.server.pool.waiting_count)
        await waiting.socket.send(b"!", socket.MSG_OOB)
        held.release.set()
        with trio.fail_after(5):
            assert (await waiting.receive_some(65536)).startswith(b"HTTP/1.1 200 ")
            async with Client.connect(held.proxy.address) as third:
                assert (await third.request(b"GET", b"/third")).status == 200
        await waiting.aclose()
