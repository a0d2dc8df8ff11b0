"""The memory transport against TCP on loopback: the same moves, the same outcomes.

The engine tests and the simulation run on `MemoryTransport`; they prove something about
production only where it behaves as a TCP socket does. Each case here runs on both: a
connected TCP pair on 127.0.0.1 (`SocketTransport`) and a memory pair, and must give the
same answers (found in review: the first write after the peer's clean close was refused on
memory and taken by TCP, so memory logged 499 where production logged 200).
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from trioproxy.engine._memory import memory_transport_pair
from trioproxy.engine._transport import SocketTransport, Transport

Pair = Callable[[], AsyncIterator[tuple[Transport, Transport]]]


@asynccontextmanager
async def tcp_pair() -> AsyncIterator[tuple[Transport, Transport]]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    ends: list[Transport] = []
    for sock in (client, server):
        sock.setblocking(False)
        ends.append(SocketTransport(trio.socket.from_stdlib_socket(sock)))
    try:
        yield ends[0], ends[1]
    finally:
        for end in ends:
            end.close()


@asynccontextmanager
async def memory_pair() -> AsyncIterator[tuple[Transport, Transport]]:
    a, b = memory_transport_pair()
    try:
        yield a, b
    finally:
        a.close()
        b.close()


PAIRS = {"tcp": tcp_pair, "memory": memory_pair}
pytestmark = pytest.mark.parametrize("kind", list(PAIRS))


async def read(end: Transport) -> bytes | str:
    """What the next read gives once the end is readable: bytes, b"" or the error's name."""
    with trio.fail_after(5):
        await end.wait_readable()
    try:
        data = end.read_nowait(65536)
    except OSError as exc:
        return type(exc).__name__
    assert data is not None
    return data


def write(end: Transport, data: bytes) -> int | str | None:
    try:
        return end.write_nowait(memoryview(data))
    except OSError as exc:
        return type(exc).__name__


async def test_bytes_then_a_clean_close(kind: str) -> None:
    async with PAIRS[kind]() as (a, b):
        assert write(a, b"last words") == 10
        a.close()
        assert not b.peer_closed()  # bytes first: a pipelined request is not a close
        assert await read(b) == b"last words"
        assert b.peer_closed()
        assert await read(b) == b""


async def test_the_first_write_after_the_peers_clean_close_is_taken(kind: str) -> None:
    async with PAIRS[kind]() as (a, b):
        a.close()
        assert await read(b) == b""
        assert write(b, b"answer") == 6  # the peer's kernel answers it with a reset


async def test_a_half_close_leaves_the_other_way_open(kind: str) -> None:
    async with PAIRS[kind]() as (a, b):
        a.shutdown_write()
        assert await read(b) == b""
        assert write(b, b"still here") == 10
        assert await read(a) == b"still here"
        assert write(a, b"x") == "BrokenPipeError"


async def test_closing_with_input_unread_resets_after_what_was_sent(kind: str) -> None:
    async with PAIRS[kind]() as (a, b):
        assert write(b, b"never read") == 10
        with trio.fail_after(5):
            await a.wait_readable()  # it has arrived, unread
        assert write(a, b"sent before") == 11
        a.close()
        assert await read(b) == b"sent before"
        assert await read(b) == "ConnectionResetError"
        assert write(b, b"x") in ("ConnectionResetError", "BrokenPipeError")


async def test_a_full_buffer_holds_the_writer_back(kind: str) -> None:
    async with PAIRS[kind]() as (a, b):
        sent = 0
        while (taken := write(a, b"x" * 65536)) is not None:
            assert isinstance(taken, int)
            sent += taken
        assert not a.readable_now()
        received = 0
        while received < sent:
            data = await read(b)
            assert isinstance(data, bytes) and data
            received += len(data)
        with trio.fail_after(5):
            await a.wait_writable()
        assert write(a, b"more") == 4


async def test_a_connection_we_closed_reads_as_gone(kind: str) -> None:
    async with PAIRS[kind]() as (a, _):
        a.close()
        assert a.closed and a.readable_now() and a.peer_closed()
        with pytest.raises(trio.ClosedResourceError):
            await a.wait_readable()


async def _second_waiter(wait: Callable[[], Awaitable[None]]) -> str:
    """What a second task gets waiting the same way while a first one waits."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait)
        await trio.testing.wait_all_tasks_blocked()
        try:
            with trio.fail_after(5):
                await wait()
        except trio.BusyResourceError:
            return "BusyResourceError"
        finally:
            nursery.cancel_scope.cancel()
    return "waited too"


async def test_a_second_task_waiting_to_read_one_end_is_refused(kind: str) -> None:
    async with PAIRS[kind]() as (a, _):
        assert await _second_waiter(a.wait_readable) == "BusyResourceError"


async def test_a_second_task_waiting_to_write_one_end_is_refused(kind: str) -> None:
    async with PAIRS[kind]() as (a, _):
        while write(a, b"x" * 65536) is not None:  # full: the first writer waits
            pass
        assert await _second_waiter(a.wait_writable) == "BusyResourceError"


async def test_one_reader_and_one_writer_may_wait_on_one_end_together(kind: str) -> None:
    async with PAIRS[kind]() as (a, b):
        while write(a, b"x" * 65536) is not None:
            pass
        async with trio.open_nursery() as nursery:
            nursery.start_soon(a.wait_readable)
            nursery.start_soon(a.wait_writable)
            await trio.testing.wait_all_tasks_blocked()
            assert write(b, b"ping") == 4  # the reader wakes; the writer still waits
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
