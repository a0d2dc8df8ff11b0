"""Attacks on a task's own busy poll (`engine._busypoll.spin_until_readable`, `Wire.recv_if_spun`)
in real trio runs on real sockets: a deadline that expires in the spinning task's own pass, a
cancelled task, an EOF or a reset caught by the poll, transports with no socket of their own,
and embedded servers. Windows are far larger than any configuration allows, so a missing bound
shows as a long spin instead of passing unnoticed."""

from __future__ import annotations

import socket
import struct
import time

import pytest
import trio
import trio.testing

from trioproxy.config._settings import Limits
from trioproxy.core._errors import ClientGone
from trioproxy.engine._busypoll import BusyPoll, busy_poll, spin_until_readable
from trioproxy.engine._memory import memory_transport_pair
from trioproxy.engine._peer import Downstream, server_h11
from trioproxy.engine._transport import SocketTransport

from ..support import Client, count_spins, running_proxy, spinning_busy_poll

WINDOW_S = 0.3  # a window no configuration allows (the maximum is 1 ms)
QUICK_S = 0.15  # far below WINDOW_S: the spin did not run its window


def _spinning(window_s: float = WINDOW_S) -> BusyPoll:
    return spinning_busy_poll(window_s)


class _JumpingClock(trio.abc.Clock):
    """Trio's clock, able to jump forward: time passing between two reads of the clock (a
    preempted process, or a deadline due within the microsecond between them)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def start_clock(self) -> None:
        pass

    def current_time(self) -> float:
        return time.perf_counter() + self.offset

    def deadline_to_sleep_time(self, deadline: float) -> float:
        return deadline - self.current_time()


class _JumpAfterIOWait(trio.abc.Instrument):
    """Added after `BusyPoll`, so its ``after_io_wait`` runs after busy polling's: the clock
    jumps between busy polling's look at the deadlines and trio's own, which expires them."""

    def __init__(self, clock: _JumpingClock, jump_s: float) -> None:
        self.clock, self.jump_s, self.armed = clock, jump_s, False

    def after_io_wait(self, timeout: float) -> None:
        if self.armed:
            self.armed = False
            self.clock.offset += self.jump_s


def test_a_deadline_expiring_in_the_spinning_tasks_own_pass_ends_the_spin(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """Busy polling sees one task woken and no deadline due; a moment later trio's own clock
    read expires a timer, whose task joins the same pass. The first task must not spin while
    the timer's task waits its turn (half the passes run it first, after the spin)."""
    ours, theirs = pair
    never, _never_peer = socket.socketpair()
    clock = _JumpingClock()

    async def main() -> tuple[bool, float, float]:
        busy = _spinning()
        jumper = _JumpAfterIOWait(clock, jump_s=10.0)
        trio.lowlevel.add_instrument(jumper)
        timer_woke: list[float] = []
        spun: list[tuple[bool, float]] = []

        async def timer() -> None:
            await trio.sleep(5.0)  # expired by the jump, in the reading task's pass
            timer_woke.append(time.perf_counter())

        async def reader() -> None:
            await trio.testing.wait_all_tasks_blocked()
            theirs.send(b"x")
            jumper.armed = True
            await trio.lowlevel.wait_readable(ours)  # the pass: this task, then the timer's
            start = time.perf_counter()
            found = spin_until_readable(never.fileno())  # never readable: only bounds end it
            spun.append((found, start))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(timer)
            nursery.start_soon(reader)
        busy_poll(busy, 0)
        found, start = spun[0]
        return found, time.perf_counter() - start, timer_woke[0] - start

    with never, _never_peer:
        found, elapsed, _ = trio.run(main, clock=clock)
    assert not found
    assert elapsed < QUICK_S  # no spin while the expired timer's task was runnable


def _downstream(sock: socket.socket) -> Downstream:
    transport = SocketTransport(trio.socket.from_stdlib_socket(sock))
    return Downstream(transport, server_h11(Limits()))


def test_a_cancelled_task_does_not_spin(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, _ = pair

    async def main() -> tuple[bytes | None, float]:
        busy = _spinning()
        down = _downstream(ours)
        with trio.CancelScope() as scope:
            await trio.testing.wait_all_tasks_blocked()
            await trio.lowlevel.checkpoint()  # alone in its pass
            scope.cancel()
            start = time.perf_counter()
            got = down.recv_if_spun()  # the wait after it raises Cancelled: no poll first
            elapsed = time.perf_counter() - start
        busy_poll(busy, 0)
        return got, elapsed

    got, elapsed = trio.run(main)
    assert got is None
    assert elapsed < QUICK_S


def test_an_eof_caught_by_the_spin_reads_as_an_eof(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair

    async def main() -> bytes | None:
        busy = _spinning()
        down = _downstream(ours)
        await trio.testing.wait_all_tasks_blocked()
        await trio.lowlevel.checkpoint()
        theirs.shutdown(socket.SHUT_WR)
        got = down.recv_if_spun()
        busy_poll(busy, 0)
        return got

    assert trio.run(main) == b""


def test_a_reset_caught_by_the_spin_is_the_client_gone() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        theirs = socket.create_connection(listener.getsockname())
        ours, _ = listener.accept()
    with ours:
        ours.setblocking(False)

        async def main() -> None:
            busy = _spinning()
            down = _downstream(ours)
            await trio.testing.wait_all_tasks_blocked()
            await trio.lowlevel.checkpoint()
            theirs.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            theirs.close()  # RST
            try:
                with pytest.raises(ClientGone):
                    down.recv_if_spun()
            finally:
                busy_poll(busy, 0)

        trio.run(main)


def test_a_memory_transport_never_spins() -> None:
    async def main() -> tuple[bytes | None, int]:
        spins = 0
        spin = BusyPoll.spin

        def counted(self: BusyPoll, fd: int) -> bool:
            nonlocal spins
            spins += 1
            return spin(self, fd)

        busy = _spinning()
        BusyPoll.spin = counted  # type: ignore[method-assign]
        try:
            ours, _theirs = memory_transport_pair()
            down = Downstream(ours, server_h11(Limits()))
            await trio.testing.wait_all_tasks_blocked()
            await trio.lowlevel.checkpoint()
            got = down.recv_if_spun()
        finally:
            BusyPoll.spin = spin  # type: ignore[method-assign]
            busy_poll(busy, 0)
        return got, spins

    assert trio.run(main) == (None, 0)


async def test_an_embedded_server_never_spins(monkeypatch: pytest.MonkeyPatch) -> None:
    spins = count_spins(monkeypatch)

    async def origin(stream: trio.SocketStream) -> None:
        async for data in stream:
            if data.endswith(b"\r\n\r\n"):
                await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    async with running_proxy(origin) as proxy, Client.connect(proxy.address) as client:
        for _ in range(10):
            assert (await client.request(b"GET", b"/")).status == 200
    assert spins == []


def test_a_reload_lowering_the_limit_bounds_the_very_next_spin(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, _ = pair

    async def main() -> tuple[bool, float]:
        busy = _spinning()  # (a window grown under a larger limit)
        assert busy_poll(busy, 50) is busy  # a reload to 50 us retunes it in place
        await trio.testing.wait_all_tasks_blocked()
        await trio.lowlevel.checkpoint()
        start = time.perf_counter()
        found = spin_until_readable(ours.fileno())  # nothing comes: only the window ends it
        elapsed = time.perf_counter() - start
        busy_poll(busy, 0)
        return found, elapsed

    found, elapsed = trio.run(main)
    assert not found
    assert elapsed < QUICK_S
