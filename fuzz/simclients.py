"""The simulated clients: each opens one connection to the proxy and plays its script.

A client sends its requests (pipelined or one at a time, whole or in slow pieces, Expect
waiting for a 100), then ends as the script says: reads every answer, half-closes and reads
to the end, leaves early, resets mid-request, never sends, or sends garbage. Its log says
what it sent, what it received (parsed by `Replies`) and how its connection ended.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from trioproxy.engine._memory import MemoryNetwork, MemoryTransport

from .simworld import ClientSpec, Replies, recv, request_bytes, send, token

PROXY_ADDRESS = ("192.0.2.1", 80)
# Virtual seconds: every client is done long before (the longest timeout is 10 s), so a
# client still waiting then waits forever.
WORLD_END_S = 600.0
EXPECT_WAIT_S = 1.0  # how long a client waits for a 100 Continue before sending its body


@dataclass
class ClientLog:
    index: int
    replies: Replies
    received: bytearray = field(default_factory=bytearray)
    heads_sent: int = 0  # requests whose head went out whole
    requests_sent: int = 0  # requests that went out whole
    closed_by_proxy: bool = False  # the reader saw an EOF or a reset
    refused: bool = False
    gave_up: bool = False
    hung: bool = False
    changed: trio.Event = field(default_factory=trio.Event)

    def notify(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    async def until(self, condition: Callable[[], bool]) -> None:
        while not (condition() or self.closed_by_proxy):
            await self.changed.wait()


async def run_client(network: MemoryNetwork, index: int, spec: ClientSpec, log: ClientLog) -> None:
    with trio.move_on_at(WORLD_END_S) as world:
        await trio.sleep_until(spec.start_s)
        try:
            transport = network.open(PROXY_ADDRESS, client_ip=f"198.51.100.{index + 1}")
        except ConnectionRefusedError:  # the proxy stopped before this client came
            log.refused = True
            return
        give_up = math.inf if spec.give_up_s is None else spec.start_s + spec.give_up_s
        try:
            with trio.CancelScope(deadline=give_up) as scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_read, transport, log)
                    await _write(transport, index, spec, log)
                    if spec.ending in ("read", "leave_early", "reset"):
                        nursery.cancel_scope.cancel()
            log.gave_up = scope.cancelled_caught
        finally:
            if spec.ending == "reset":
                transport.reset()
            transport.close()
    log.hung = world.cancelled_caught


async def _read(transport: MemoryTransport, log: ClientLog) -> None:
    try:
        while data := await recv(transport):
            log.received += data
            log.replies.feed(data)
            log.notify()
    except OSError:
        pass  # a reset: as visible a close as an EOF
    log.replies.feed(b"")
    log.closed_by_proxy = True
    log.notify()


async def _write(transport: MemoryTransport, index: int, spec: ClientSpec, log: ClientLog) -> None:
    if spec.ending == "silent":
        await log.until(lambda: False)  # until the proxy closes
        return
    if spec.ending == "garbage":
        messages = [(b"GARBAGE\r\n\r\n", 11)]
    else:
        messages = [request_bytes(token(index, j), r) for j, r in enumerate(spec.requests)]
    budget = sum(len(m) for m, _ in messages)
    if spec.ending == "reset":
        budget = int(budget * spec.cut_fraction)
    try:
        for j, (message, head_length) in enumerate(messages):
            if not spec.pipelined and spec.ending == "read":
                await log.until(lambda j=j: len(log.replies.done) >= j)  # type: ignore[misc]  # (j=j binds the loop's j; mypy cannot type a lambda's default)
                if log.closed_by_proxy:
                    return
            sent = [0]
            try:
                if spec.ending != "garbage" and spec.requests[j].expect:
                    await _send_pieces(transport, message[: min(head_length, budget)], spec, sent)
                    with trio.move_on_after(EXPECT_WAIT_S):  # as curl: then the body anyway
                        await log.until(
                            lambda j=j: j in log.replies.continued or len(log.replies.done) > j  # type: ignore[misc]  # (as above)
                        )
                    await _send_pieces(transport, message[head_length:budget], spec, sent)
                else:
                    await _send_pieces(transport, message[:budget], spec, sent)
            finally:
                budget -= sent[0]
                log.heads_sent += sent[0] >= head_length
                log.requests_sent += sent[0] == len(message)
            if spec.ending == "reset" and budget <= 0:
                return
    except OSError:  # the proxy closed or reset: wait for the reader to see it
        if spec.ending == "read":
            await log.until(lambda: False)
        return
    if spec.ending == "half_close":
        transport.shutdown_write()
    elif spec.ending == "read":
        await log.until(lambda: len(log.replies.done) == len(messages))
        if log.replies.switched and not log.closed_by_proxy:
            await _through_the_tunnel(transport, index, log)


async def _send_pieces(
    transport: MemoryTransport, data: bytes, spec: ClientSpec, sent: list[int]
) -> None:
    if not spec.piece_bytes:
        await send(transport, data, sent)
        return
    for at in range(0, len(data), spec.piece_bytes):
        if at:
            await trio.sleep(spec.pause_s)
        await send(transport, data[at : at + spec.piece_bytes], sent)


async def _through_the_tunnel(transport: MemoryTransport, index: int, log: ClientLog) -> None:
    message = b"[%s tunnelled]" % token(index, 99)
    try:
        await send(transport, message)
    except OSError:
        return
    await log.until(lambda: message in log.replies.tunnel)
