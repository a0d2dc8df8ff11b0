"""Lossless cancellation in the transport (`_peer`): a cancellation delivered at any
checkpoint of a read or a write loses no byte read and never reports a completed write as
failed.

Each test runs the operation once per checkpoint it reaches, cancelling exactly at that
checkpoint (the checkpoint functions the transport uses are wrapped to call
``scope.cancel()`` as they are entered), then checks what crossed the socket.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import h11
import pytest
import trio
import trio.testing

import trioproxy.engine._peer as peer_module
from trioproxy.core._errors import ClientGone
from trioproxy.engine._peer import Downstream

CHECKPOINTS = (
    "checkpoint_if_cancelled",
    "cancel_shielded_checkpoint",
    "wait_readable",
    "wait_writable",
)


class CancelAt:
    """Counts the transport's checkpoints; cancels ``scope`` when the ``at``-th is entered."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.seen = 0
        self.scope: trio.CancelScope | None = None

    def wrap(self, real: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def checkpoint(*args: Any) -> Any:
            self.seen += 1
            if self.seen == self.at and self.scope is not None:
                self.scope.cancel()
            return await real(*args)

        return checkpoint


@contextmanager
def cancelling_at(monkeypatch: pytest.MonkeyPatch, at: int) -> Iterator[CancelAt]:
    plan = CancelAt(at)
    with monkeypatch.context() as patch:
        for name in CHECKPOINTS:
            patch.setattr(peer_module, name, plan.wrap(getattr(peer_module, name)))
        yield plan


def socket_pair() -> tuple[Downstream, socket.socket]:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
    return Downstream(stream, h11.Connection(h11.SERVER), "test"), theirs


async def test_a_cancelled_receive_loses_no_byte(monkeypatch: pytest.MonkeyPatch) -> None:
    """The read waits for bytes that come later; cancelled at each checkpoint in turn."""
    outcomes = []
    for at in range(1, 20):
        peer, other = socket_pair()
        with peer.stream.socket, other:
            sent = False
            with cancelling_at(monkeypatch, at) as plan:
                with trio.CancelScope() as scope:
                    plan.scope = scope
                    async with trio.open_nursery() as nursery:

                        async def send_when_it_waits(other: socket.socket) -> None:
                            nonlocal sent
                            await trio.testing.wait_all_tasks_blocked()
                            other.send(b"hello")
                            sent = True

                        nursery.start_soon(send_when_it_waits, other)
                        received = await peer.recv(5.0)
            if not scope.cancelled_caught:
                assert received == b"hello"
                assert peer.bytes_received == 5
                outcomes.append("returned")
                break
            outcomes.append("cancelled")
            # Nothing was consumed: the bytes are there for the next read.
            assert peer.bytes_received == 0
            if not sent:
                other.send(b"hello")
            assert await peer.recv(5.0) == b"hello"
    assert outcomes[-1] == "returned" and "cancelled" in outcomes


async def test_a_receive_that_completed_at_once_is_never_cancelled_after_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Checkpoint 1 is the check before the read, 2 the yield after it.
    for at, expect_cancelled in ((1, True), (2, False)):
        peer, other = socket_pair()
        with peer.stream.socket, other:
            other.send(b"ready")
            received = b""
            with cancelling_at(monkeypatch, at) as plan, trio.CancelScope() as scope:
                plan.scope = scope
                received = await peer.recv(5.0)
            assert scope.cancelled_caught is expect_cancelled
            if expect_cancelled:  # nothing was taken: the next read gets it all
                received = await peer.recv(5.0)
            assert received == b"ready"
            assert peer.bytes_received == 5


async def test_a_cancelled_flush_reports_exactly_what_was_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A write too large for the socket buffer waits for room; cancelled at each checkpoint
    in turn, the bytes that arrived plus those still queued are the whole message, and a
    write that completed is reported complete."""
    message = bytes(range(256)) * 4096  # 1 MiB: more than the socket buffers hold
    outcomes = []
    for at in range(1, 200):
        peer, other = socket_pair()
        arrived = bytearray()
        with peer.stream.socket, other:
            peer._out.append(message)
            with cancelling_at(monkeypatch, at) as plan:
                with trio.CancelScope() as scope:
                    plan.scope = scope
                    async with trio.open_nursery() as nursery:

                        async def drain(other: socket.socket, arrived: bytearray) -> None:
                            while len(arrived) < len(message):
                                await trio.lowlevel.wait_readable(other)
                                arrived.extend(other.recv(1 << 20))

                        nursery.start_soon(drain, other, arrived)
                        await peer.send_queued(5.0)
            other.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                while chunk := other.recv(1 << 20):
                    arrived.extend(chunk)
            assert peer.bytes_sent == len(arrived)
            assert bytes(arrived) + peer._sending.tobytes() + b"".join(peer._out) == message
            if not scope.cancelled_caught:
                assert not peer.has_queued
                outcomes.append("completed")
                break
            outcomes.append("cancelled")
    assert outcomes[-1] == "completed" and outcomes.count("cancelled") >= 2


async def test_a_flush_to_a_gone_peer_is_a_clean_error() -> None:
    peer, other = socket_pair()
    other.close()
    with peer.stream.socket:
        peer._out.append(b"x" * 1000)
        with pytest.raises(ClientGone):
            await peer.send_queued(1.0)
