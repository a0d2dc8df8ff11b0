"""Lossless cancellation in the peers (`_peer`): a cancellation delivered at any
checkpoint of a read or a write loses no byte read and never reports a completed write as
failed; on both transports (a socket pair, and memory on the autojump clock).

Each test runs the operation once per checkpoint it reaches, cancelling exactly at that
checkpoint (the checkpoints the peer uses, and the transports' waits, are wrapped to call
``scope.cancel()`` as they are entered), then checks what crossed the connection. And
nothing after a completed read or write may be cancellable, whatever its name: those tests
cancel inside the transport the moment the syscall completes.
"""

from __future__ import annotations

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
from trioproxy.engine._memory import MemoryTransport, memory_transport_pair
from trioproxy.engine._peer import Downstream
from trioproxy.engine._transport import SocketTransport

CHECKPOINTS = ("checkpoint_if_cancelled", "cancel_shielded_checkpoint")
WAITS = ("wait_readable", "wait_writable")

pytestmark = pytest.mark.parametrize("kind", ["socket", "memory"])


class Other:
    """The far end, driven by the test: a plain socket, or the memory pair's other end."""

    def __init__(self, end: socket.socket | MemoryTransport) -> None:
        self.end = end

    def send(self, data: bytes) -> None:
        if isinstance(self.end, socket.socket):
            self.end.send(data)
        else:
            assert self.end.write_nowait(memoryview(data)) == len(data)

    async def wait_readable(self) -> None:
        if isinstance(self.end, socket.socket):
            await trio.lowlevel.wait_readable(self.end)
        else:
            await self.end.wait_readable()

    def recv_nowait(self) -> bytes:
        """What has arrived (b"" when nothing has)."""
        if isinstance(self.end, socket.socket):
            self.end.setblocking(False)
            try:
                return self.end.recv(1 << 20)
            except BlockingIOError:
                return b""
        return self.end.read_nowait(1 << 20) or b""

    def close(self) -> None:
        self.end.close()


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
        for transport in (SocketTransport, MemoryTransport):
            for name in WAITS:
                patch.setattr(transport, name, plan.wrap(getattr(transport, name)))
        yield plan


@contextmanager
def connected(kind: str) -> Iterator[tuple[Downstream, Other]]:
    """A peer and its far end; a memory pair's buffers are as small as a socket's hold."""
    if kind == "socket":
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        transport: SocketTransport | MemoryTransport = SocketTransport(
            trio.socket.from_stdlib_socket(ours)
        )
        other = Other(theirs)
    else:
        transport, far = memory_transport_pair(capacity=256 * 1024)
        other = Other(far)
    peer = Downstream(transport, h11.Connection(h11.SERVER))
    try:
        yield peer, other
    finally:
        peer.close()
        other.close()


async def test_a_cancelled_receive_loses_no_byte(
    monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """The read waits for bytes that come later; cancelled at each checkpoint in turn."""
    outcomes = []
    for at in range(1, 20):
        with connected(kind) as (peer, other):
            sent = False
            with cancelling_at(monkeypatch, at) as plan:
                with trio.CancelScope() as scope:
                    plan.scope = scope
                    async with trio.open_nursery() as nursery:

                        async def send_when_it_waits(other: Other) -> None:
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


class CancelAfterSyscall:
    """Cancels ``scope`` the moment a read or a write completes, inside the transport: then
    any cancellable checkpoint after it raises, whatever it is called (counting only the
    checkpoints the peer names would miss a ``trio.sleep(0)`` added after the syscall)."""

    def __init__(self, ours: object) -> None:
        self.ours = ours  # the peer's transport (in memory the far end's class is the same)
        self.scope = trio.CancelScope()
        self.completed: list[str] = []

    def wrap(self, name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def syscall(*args: Any) -> Any:
            result = real(*args)
            if args[0] is self.ours and result is not None:  # completed (None: would block)
                self.done(name)
            return result

        return syscall

    def done(self, name: str) -> None:
        self.completed.append(name)
        self.scope.cancel()


class CancellingCalls:
    """A socket transport's `calls` (the wire reads and writes with them, not with
    ``read_nowait``), cancelling as `CancelAfterSyscall.wrap` does once one completes."""

    def __init__(self, plan: CancelAfterSyscall, real: Any) -> None:
        self.plan = plan
        self.real = real

    def recv(self, max_bytes: int, /) -> bytes:
        data: bytes = self.real.recv(max_bytes)  # (BlockingIOError: would block)
        self.plan.done("read_nowait")
        return data

    def send(self, data: bytes | memoryview, /) -> int:
        sent: int = self.real.send(data)
        self.plan.done("write_nowait")
        return sent

    def fileno(self) -> int:
        return int(self.real.fileno())


@contextmanager
def cancelling_after_each_completed_syscall(
    monkeypatch: pytest.MonkeyPatch, peer: Downstream
) -> Iterator[CancelAfterSyscall]:
    plan = CancelAfterSyscall(peer.transport)
    with monkeypatch.context() as patch:
        for transport in (SocketTransport, MemoryTransport):
            for name in ("read_nowait", "write_nowait"):
                patch.setattr(transport, name, plan.wrap(name, getattr(transport, name)))
        if isinstance(peer.transport, SocketTransport):
            patch.setattr(peer.transport, "calls", CancellingCalls(plan, peer.transport.calls))
        yield plan


@pytest.mark.parametrize("ready", [True, False], ids=["ready-at-once", "after-waiting"])
async def test_a_receive_that_completed_is_never_cancelled_after_it(
    monkeypatch: pytest.MonkeyPatch, kind: str, ready: bool
) -> None:
    with connected(kind) as (peer, other):
        if ready:
            other.send(b"ready")
        async with trio.open_nursery() as nursery:
            if not ready:

                async def send_when_it_waits() -> None:
                    await trio.testing.wait_all_tasks_blocked()
                    other.send(b"ready")

                nursery.start_soon(send_when_it_waits)
            with cancelling_after_each_completed_syscall(monkeypatch, peer) as plan, plan.scope:
                received = await peer.recv(5.0)
        assert plan.completed == ["read_nowait"]
        assert not plan.scope.cancelled_caught  # no cancellable checkpoint after the read
        assert received == b"ready" and peer.bytes_received == 5


@pytest.mark.parametrize("size", [11, 1 << 20], ids=["at-once", "after-waiting"])
async def test_a_send_that_completed_is_never_cancelled_after_it(
    monkeypatch: pytest.MonkeyPatch, kind: str, size: int
) -> None:
    """Every write is followed by a cancellation: a write that left bytes to send may stop
    the send (they stay queued), the write that finished it must not report it failed."""
    message = bytes(range(256)) * (size // 256) if size > 256 else b"x" * size
    arrived = bytearray()
    with connected(kind) as (peer, other):
        async with trio.open_nursery() as nursery:

            async def drain() -> None:
                while len(arrived) < len(message):
                    await other.wait_readable()
                    arrived.extend(other.recv_nowait())

            nursery.start_soon(drain)
            peer._out.append(message)
            with cancelling_after_each_completed_syscall(monkeypatch, peer) as plan:
                while True:
                    plan.scope = trio.CancelScope()
                    with plan.scope:
                        await peer.send_queued(5.0)
                    if not plan.scope.cancelled_caught:
                        break
                    assert peer.has_queued  # cancelled only after a write that left some
        assert not peer.has_queued and plan.completed
    assert bytes(arrived) == message and peer.bytes_sent == len(message)


async def test_a_cancelled_flush_reports_exactly_what_was_sent(
    monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """A write too large for the socket buffer waits for room; cancelled at each checkpoint
    in turn, the bytes that arrived plus those still queued are the whole message, and a
    write that completed is reported complete."""
    message = bytes(range(256)) * 4096  # 1 MiB: more than the socket buffers hold
    outcomes = []
    for at in range(1, 200):
        arrived = bytearray()
        with connected(kind) as (peer, other):
            peer._out.append(message)
            with cancelling_at(monkeypatch, at) as plan:
                with trio.CancelScope() as scope:
                    plan.scope = scope
                    async with trio.open_nursery() as nursery:

                        async def drain(other: Other, arrived: bytearray) -> None:
                            while len(arrived) < len(message):
                                await other.wait_readable()
                                arrived.extend(other.recv_nowait())

                        nursery.start_soon(drain, other, arrived)
                        await peer.send_queued(5.0)
            while chunk := other.recv_nowait():
                arrived.extend(chunk)
            assert peer.bytes_sent == len(arrived)
            assert bytes(arrived) + peer._sending.tobytes() + b"".join(peer._out) == message
            if not scope.cancelled_caught:
                assert not peer.has_queued
                outcomes.append("completed")
                break
            outcomes.append("cancelled")
    assert outcomes[-1] == "completed" and outcomes.count("cancelled") >= 2


async def test_a_flush_to_a_gone_peer_is_a_clean_error(kind: str) -> None:
    with connected(kind) as (peer, other):
        other.close()
        with pytest.raises(ClientGone):
            for _ in range(2):  # TCP takes the first write after the peer's close, not two
                peer._out.append(b"x" * 1000)
                await peer.send_queued(1.0)


async def test_a_peer_closed_by_us_reads_as_gone_on_both_transports(kind: str) -> None:
    # Found in review: a closed socket's fd (-1) reached poll and epoll as a ValueError (an
    # internal error), where the memory transport said ClientGone.
    with connected(kind) as (peer, _):
        peer.close()
        assert peer.readable_now() and peer.peer_closed()
        with pytest.raises(ClientGone):
            await peer.wait_readable()
        with pytest.raises(ClientGone):
            await peer.recv(1.0)
        peer._out.append(b"x")
        with pytest.raises(ClientGone):
            await peer.send_queued(1.0)


async def test_a_send_that_completed_at_once_is_never_cancelled_after_it(kind: str) -> None:
    # A cancellation that arrives once the pre-check has passed: the write completes, and the
    # yield after it must not report it failed (a completed send raising Cancelled would
    # mark the h11 side broken and drop a response that was sent).
    with connected(kind) as (peer, other), trio.CancelScope() as scope:
        real = trio.lowlevel.checkpoint_if_cancelled  # what _peer calls, patched below

        async def then_cancel() -> None:
            await real()
            scope.cancel()

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(peer_module, "checkpoint_if_cancelled", then_cancel)
            peer._out.append(b"all at once")
            await peer.send_queued(5.0)
        arrived = other.recv_nowait()
    assert not scope.cancelled_caught
    assert not peer.has_queued and peer.bytes_sent == len(b"all at once")
    assert arrived == b"all at once"


async def test_a_send_that_completed_at_once_lets_others_run(kind: str) -> None:
    # Fairness: a task whose writes never block still yields after each one.
    with connected(kind) as (peer, other):
        ran = 0

        async def other_task() -> None:
            nonlocal ran
            while True:
                ran += 1
                await trio.lowlevel.checkpoint()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(other_task)
            await trio.lowlevel.checkpoint()  # it has started
            before = ran
            for _ in range(10):
                peer._out.append(b"x")
                await peer.send_queued(5.0)
            assert ran - before >= 5  # without the yield: 0
            nursery.cancel_scope.cancel()
        assert other.recv_nowait() == b"x" * 10
