"""The lingering close is bounded: 2 s and 1 MiB read and dropped, however the client
goes on sending. The linger serves the client's answer (a close with its bytes unread would
be a reset); it must not become a way to hold a connection slot, or the drain, for as long
as a client likes: after an early answer with the body unread nothing else bounds the
connection (the rate floors ended with the exchange), and a drain waits for it.
"""

from __future__ import annotations

import contextlib

import trio
import trio.testing

from trioproxy.config._config import settings_from_bytes
from trioproxy.engine._memory import MemoryNetwork

from ..memnet import MemoryProxy, MemoryStream, ScriptedOrigin, memory_origin, memory_proxy

DENY = b'[[rules]]\nmatch.path_prefix = "/private/"\ndeny = true\n'
# A body far larger than anything the proxy reads of it: it answers before reading it.
POST_UNREAD = b"POST /private/x HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n"


async def read_answer(stream: MemoryStream) -> bytes:
    """What the proxy sends until its half-close (the linger's start)."""
    received = bytearray()
    while chunk := await stream.receive_some(65536):
        received += chunk
    return bytes(received)


async def trickle(stream: MemoryStream) -> None:
    """A byte every 0.1 s, inside every inactivity timeout, until the proxy cuts it off."""
    with contextlib.suppress(trio.BrokenResourceError):
        while True:
            await stream.send_all(b"x")
            await trio.sleep(0.1)


async def closed_after(proxy: MemoryProxy, since: float) -> float:
    with trio.fail_after(60):  # (without a bound: until the body's 100 MB, for ever)
        await proxy.settled()
    return trio.current_time() - since


async def test_a_client_answered_early_that_keeps_sending_is_cut_off_after_2_s(
    autojump_clock: trio.testing.MockClock,
) -> None:
    settings = settings_from_bytes(DENY, file="t.toml")
    async with memory_proxy(settings) as proxy:
        stream = proxy.open()
        async with stream, trio.open_nursery() as nursery:
            await stream.send_all(POST_UNREAD)
            assert (await read_answer(stream)).startswith(b"HTTP/1.1 403 ")
            answered = trio.current_time()
            nursery.start_soon(trickle, stream)
            assert await closed_after(proxy, answered) <= 2.0 + 0.2
            nursery.cancel_scope.cancel()


async def test_a_client_that_floods_the_linger_is_cut_off_after_1_mib(
    autojump_clock: trio.testing.MockClock,
) -> None:
    settings = settings_from_bytes(DENY, file="t.toml")
    flood, sent = 8 << 20, 0
    async with memory_proxy(settings) as proxy:
        stream = proxy.open()
        async with stream:
            await stream.send_all(POST_UNREAD)
            assert (await read_answer(stream)).startswith(b"HTTP/1.1 403 ")
            with contextlib.suppress(trio.BrokenResourceError), trio.fail_after(60):
                while sent < flood:  # (no virtual time passes: only the byte bound ends it)
                    await stream.send_all(b"x" * 65536)
                    sent += 65536
            await proxy.settled()
    assert sent <= (1 << 20) + 4 * 65536  # the linger's MiB, and what the pipes held


async def test_the_drains_linger_ends_after_2_s_though_the_client_keeps_sending(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with memory_origin(network, ScriptedOrigin()), memory_proxy(network=network) as proxy:
        stream = proxy.open()
        async with stream, trio.open_nursery() as nursery:
            await stream.send_all(b"GET /big/1048576 HTTP/1.1\r\nHost: x\r\n\r\n")
            await stream.receive_some(65536)  # mid-response when the drain begins
            proxy.server.shutdown()
            with trio.fail_after(60):
                await read_answer(stream)  # the rest, up to the linger's half-close
            lingering = trio.current_time()
            nursery.start_soon(trickle, stream)
            with trio.fail_after(60):  # (without a bound: the drain's 25 s)
                await proxy.stopped()
            assert trio.current_time() - lingering <= 2.0 + 0.2
            nursery.cancel_scope.cancel()
