"""A task's own busy poll before it waits for its socket (`engine._busypoll.spin_until_readable`),
in a real trio run on real sockets: it reads its socket without a scheduler pass when nothing
else is ready, and gives way (False) to anything else: another socket, a thread's wake-up, a
deadline, a runnable task, busy polling turned off, another run. Each attack uses a window no
configuration allows, so a missing bound hangs the test instead of passing it; the proxy's
own waits use it, and one request at a time then goes through with no scheduler pass."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import trio
import trio.testing

from trioproxy.engine._busypoll import BusyPoll, busy_poll, spin_until_readable
from trioproxy.engine._fairness import may_skip_yield

from ..support import count_spins, running_proxy, spinning_busy_poll

HUGE_S = 30.0  # a window no configuration allows (the setting's maximum is 1 ms)
SLACK_S = 0.5  # for a busy machine: far below HUGE_S


def _spinning() -> BusyPoll:
    return spinning_busy_poll(HUGE_S)


async def _alone() -> None:
    """Make the calling task the only one of its scheduler pass, as a connection's task is
    with one request at a time."""
    await trio.testing.wait_all_tasks_blocked()
    await trio.lowlevel.checkpoint()


def test_its_socket_readable_first_is_read_with_no_scheduler_pass(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair

    async def main() -> float:
        busy = _spinning()
        busy.limit_s, busy.window_s = 1e-3, 0.5e-3
        await _alone()
        theirs.send(b"x")
        assert spin_until_readable(ours.fileno())  # no await: no pass, nothing else ran
        assert ours.recv(1) == b"x"
        window = busy.window_s  # a short wait: the window grows, as after a short sleep
        busy_poll(busy, 0)
        return window

    assert trio.run(main) == pytest.approx(1e-3)


def test_a_successful_spin_counts_as_a_pass_for_the_fairness_yields(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair

    async def main() -> tuple[bool, bool, bool]:
        busy = _spinning()
        await _alone()
        first = may_skip_yield()  # the step's one skip
        second = may_skip_yield()  # a second in the same step must yield
        theirs.send(b"x")
        assert spin_until_readable(ours.fileno())  # nothing else was ready: as a pass
        again = may_skip_yield()
        busy_poll(busy, 0)
        return first, second, again

    assert trio.run(main) == (True, False, True)


def test_another_socket_ready_first_ends_the_spin(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, _ = pair
    other, other_peer = socket.socketpair()

    async def main() -> tuple[bool, bool]:
        busy = _spinning()
        woken = trio.Event()

        async def waiter() -> None:
            await trio.lowlevel.wait_readable(other)
            woken.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await _alone()
            other_peer.send(b"x")  # another task's socket: trio's epoll is readable now
            spun = spin_until_readable(ours.fileno())  # ours never is: only that ends it
            await woken.wait()
        busy_poll(busy, 0)
        return spun, woken.is_set()

    with other, other_peer:
        assert trio.run(main) == (False, True)


def test_a_deadline_ends_the_spin(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, _ = pair

    async def main() -> tuple[bool, float]:
        busy = _spinning()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep, 0.02)  # a deadline 20 ms ahead
            await _alone()
            start = time.perf_counter()
            spun = spin_until_readable(ours.fileno())
            elapsed = time.perf_counter() - start
        busy_poll(busy, 0)
        return spun, elapsed

    spun, elapsed = trio.run(main)
    assert not spun
    assert elapsed < 0.02 + SLACK_S


def test_a_threads_wake_up_ends_the_spin(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, _ = pair
    go = threading.Event()

    async def main() -> bool:
        busy = _spinning()
        token = trio.lowlevel.current_trio_token()

        def later() -> None:
            go.wait()
            token.run_sync_soon(lambda: None)  # through trio's wake-up descriptor

        thread = threading.Thread(target=later, daemon=True)
        thread.start()
        await _alone()
        go.set()
        spun = spin_until_readable(ours.fileno())
        thread.join()
        busy_poll(busy, 0)
        return spun

    assert not trio.run(main)


def test_no_spin_while_a_task_is_runnable(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, _ = pair

    async def main() -> bool:
        busy = _spinning()
        await _alone()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep, 0)  # runnable until the next pass
            spun = spin_until_readable(ours.fileno())  # a spin would last HUGE_S
        busy_poll(busy, 0)
        return spun

    assert not trio.run(main)


def test_no_spin_when_busy_polling_is_off_or_from_another_run(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, _ = pair

    async def turned_off() -> bool:
        busy_poll(_spinning(), 0)  # (a reload to 0)
        await _alone()
        return spin_until_readable(ours.fileno())

    async def installed() -> None:
        _spinning()
        await _alone()  # (the task the instrument last saw alone: this run's)

    async def later_run() -> bool:
        await _alone()
        return spin_until_readable(ours.fileno())  # the other run's, left installed

    assert not trio.run(turned_off)
    trio.run(installed)
    assert not trio.run(later_run)


def test_a_spin_that_found_nothing_is_the_loops_poll_before_it_sleeps(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, _ = pair

    async def main() -> None:
        busy = busy_poll(None, 1000)
        assert busy is not None
        busy.window_s = 1e-3
        await _alone()
        assert not spin_until_readable(ours.fileno())  # 1 ms of nothing
        busy.window_s = HUGE_S  # a second poll, by the loop, would now last HUGE_S
        await trio.sleep(0.01)  # the loop sleeps at once, and wakes at the deadline
        busy_poll(busy, 0)

    trio.run(main)


async def test_the_proxys_waits_spin_one_request_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spins = count_spins(monkeypatch)
    busy = busy_poll(None, 1000)
    assert busy is not None
    busy.limit_s = busy.window_s = HUGE_S  # only readiness (or a deadline) ends a spin
    # Client and origin in threads of their own: in this run, only the proxy's tasks wait.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        origin = threading.Thread(target=_origin, args=(listener,), daemon=True)
        origin.start()
        try:
            async with running_proxy(listener.getsockname()) as proxy:
                answers = await trio.to_thread.run_sync(_client, proxy.address, 50)
        finally:
            busy_poll(busy, 0)
    assert answers == [b"HTTP/1.1 200 OK"] * 50
    # The proxy's waits (the origin's answer, the client's next request: 100) polled first,
    # and many found their socket ready. (Not all: a spin also ends at the run's next
    # deadline, and on a busy machine a thread may answer after it; in CI about half did.)
    assert spins.count(True) >= 10


ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def _origin(listener: socket.socket) -> None:
    conn, _ = listener.accept()
    with conn:
        while conn.recv(65536):  # (a request a read: the proxy sends each head whole)
            conn.sendall(ANSWER)


def _client(address: tuple[str, int], count: int) -> list[bytes]:
    status_lines = []
    with socket.create_connection(address) as sock:
        for _ in range(count):
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            received = b""
            while not received.endswith(b"ok"):
                received += sock.recv(65536)
            status_lines.append(received.split(b"\r\n", 1)[0])
    return status_lines
