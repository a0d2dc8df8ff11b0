"""A client connection's task is `serve_connection` alone, with no frame of the server's around
it (each frame of a task's chain is resumed at every wait of every request): it counts the
connection, turns a bug into one logged line instead of a dead server, and closes the
connection and frees its slot however it ends; idle, it holds nothing of its last request."""

from __future__ import annotations

import dataclasses
import logging

import pytest
import trio
import trio.testing

from tests.memnet import all_tasks, awaiting, handler_tasks, in_flight, scripted_proxy, wait_until
from tests.support import read_until_closed
from trioproxy.engine import _connection
from trioproxy.engine._peer import Downstream

_COMPILED = not str(_connection.__file__).endswith(".py")


@pytest.mark.skipif(_COMPILED, reason="a compiled coroutine has no frames to inspect")
async def test_a_connection_task_starts_at_serve_connection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scripted_proxy() as (proxy, origin), proxy.client() as client:
        await in_flight(client, origin, b"/slow/5")
        await trio.testing.wait_all_tasks_blocked()
        (task,) = [t for t in all_tasks() if t.name.endswith("ProxyServer._handle")]
        assert awaiting(task)[:2] == ["serve_connection", "serve"], awaiting(task)
        assert (await client.read_reply()).status == 200


@pytest.mark.skipif(_COMPILED, reason="a compiled coroutine has no frames to inspect")
async def test_an_idle_connection_task_holds_nothing_of_its_last_request(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scripted_proxy() as (proxy, _), proxy.client() as client:
        assert (await client.request(b"GET", b"/small")).status == 200
        await trio.testing.wait_all_tasks_blocked()
        (task,) = [t for t in all_tasks() if t.name.endswith("ProxyServer._handle")]
        assert "_read_request" in awaiting(task)  # idle, waiting for the next head
        frame = task.coro.cr_frame
        assert frame is not None
        held = frame.f_locals
        kept = {name for name, value in held.items() if type(value).__name__ == "Request"}
        assert not kept, kept
        assert (await client.request(b"GET", b"/small")).status == 200  # and it still serves


async def test_an_internal_error_ends_its_connection_alone(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with scripted_proxy() as (proxy, _):
        server = proxy.server
        await trio.testing.wait_all_tasks_blocked()  # (the accept loop holds the next slot)
        slots = server._slots.value

        def broken() -> bytes:
            raise RuntimeError("boom")

        # A request without an X-Request-ID asks the context for one: here, a bug.
        server.ctx.shared.current = dataclasses.replace(server.ctx, new_request_id=broken)
        with caplog.at_level(logging.ERROR, logger="trioproxy"):
            answer = await proxy.exchange_raw(b"GET /small HTTP/1.1\r\nHost: x\r\n\r\n")
            await wait_until(lambda: handler_tasks() == 0)
        assert answer == b""  # closed: nothing could be answered
        (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert line.startswith("internal error on a connection: RuntimeError('boom') at ")
        assert server.ctx.stats.connections_open == 0
        assert server._slots.value == slots  # its slot is free again
        assert server.ctx.stats.connections_total == 1

        server.ctx.shared.current = None  # the server goes on serving
        async with proxy.client() as client:
            assert (await client.request(b"GET", b"/small")).status == 200
        await proxy.settled()
        assert server.ctx.stats.connections_total == 2
        proxy.check_no_leak()


async def test_a_connection_that_starts_once_the_drain_began_is_closed_unread(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scripted_proxy() as (proxy, _):
        # (The flag alone: its accept loop still runs, as it may for a moment in a drain.)
        proxy.server.ctx.shared.draining = True
        start = trio.current_time()
        async with proxy.open() as stream:
            assert await read_until_closed(stream) == b""
        assert trio.current_time() == start  # at once, not at the head's deadline
        await proxy.settled()
        assert proxy.server.ctx.stats.connections_total == 1
        proxy.check_no_leak()


@pytest.mark.skipif(_COMPILED, reason="a compiled class's methods cannot be replaced")
async def test_a_close_that_raises_is_logged_and_frees_the_slot(
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with scripted_proxy() as (proxy, _):
        server = proxy.server
        await trio.testing.wait_all_tasks_blocked()  # (the accept loop holds the next slot)
        slots = server._slots.value
        close = Downstream.close
        calls = []

        def broken_close(self: Downstream) -> None:
            close(self)
            calls.append(self)
            if len(calls) == 1:
                raise RuntimeError("close failed")

        monkeypatch.setattr(Downstream, "close", broken_close)
        with caplog.at_level(logging.ERROR, logger="trioproxy"):
            async with proxy.client() as client:
                assert (await client.request(b"GET", b"/small")).status == 200
            await wait_until(lambda: handler_tasks() == 0)
        (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert line.startswith("internal error on a connection: RuntimeError('close failed')")
        assert server.ctx.stats.connections_open == 0
        assert server._slots.value == slots
        async with proxy.client() as client:  # the server goes on serving
            assert (await client.request(b"GET", b"/small")).status == 200
