"""Draining where it needs a process or real sockets: ``trioproxy.serve`` returning after
``shutdown()``, SIGTERM on the command (one process and ``--workers``), and the admin
listener's /healthz and /readyz turning 503 while a drain lasts. (The drain itself, connection
by connection: engine/test_drain.py.)

Gathered from test_embedding.py, test_cli.py, test_admin.py and test_workers.py.
"""

from __future__ import annotations

import signal
from pathlib import Path

import trio

import trioproxy

from ..cli_support import cli_proxy, wait_for_exit
from ..support import Client, HeldOrigin, raw_origin, running_proxy
from .test_admin import ADMIN_ON, admin_request
from .test_workers import _free_port


async def test_shutdown_drains_and_serve_returns(origin: tuple[str, int]) -> None:
    async with trio.open_nursery() as nursery:
        proxy = await nursery.start(trioproxy.serve, origin)
        proxy.shutdown()
    # serve returned by itself: the nursery closed without being cancelled
    assert not nursery.cancel_scope.cancel_called


async def test_sigterm_drains_an_in_flight_response_then_exits_0() -> None:
    slow = HeldOrigin(body=b"helloworld", early=len(b"hello"))
    async with raw_origin(slow) as upstream, cli_proxy(upstream) as proxy:
        async with Client.connect(proxy.address) as idle_client, trio.open_nursery() as nursery:
            replies = []

            async def in_flight() -> None:
                async with Client.connect(proxy.address) as client:
                    replies.append(await client.request(b"GET", b"/slow"))
                    # Its head went out before the signal; the connection closes after it.
                    assert await client.stream.receive_some(1) == b""

            nursery.start_soon(in_flight)
            await slow.arrived.wait()
            proxy.process.send_signal(signal.SIGTERM)
            # An idle keep-alive connection is closed at once, not kept for the drain.
            assert await idle_client.stream.receive_some(1) == b""
            slow.release.set()
        assert await wait_for_exit(proxy.process) == 0
    assert replies[0].status == 200
    assert replies[0].body == b"helloworld"
    assert b"SIGTERM" in proxy.stderr


async def test_healthz_turns_503_while_draining() -> None:
    origin = HeldOrigin(body=b"slow")
    async with running_proxy(origin, ADMIN_ON) as proxy:
        admin = proxy.server.admin_address
        healthy = await admin_request(admin, b"/healthz")
        assert (healthy.status, healthy.body) == (200, b"ok\n")
        async with Client.connect(proxy.address) as client, trio.open_nursery() as nursery:
            replies = client.request_soon(nursery, b"GET", b"/slow")
            with trio.fail_after(10):
                await origin.arrived.wait()
            proxy.server.shutdown()
            # The slow exchange keeps the drain going; the admin listener still answers.
            draining = await admin_request(admin, b"/healthz")
            not_ready = await admin_request(admin, b"/readyz")
            origin.release.set()
    assert (draining.status, draining.body) == (503, b"draining\n")
    assert (not_ready.status, not_ready.body) == (503, b"draining\n")
    assert [(r.status, r.body) for r in replies] == [(200, b"slow")]


async def test_healthz_is_503_while_the_workers_drain(tmp_path: Path) -> None:
    origin = HeldOrigin()
    admin_port = await _free_port()
    (tmp_path / "trioproxy.toml").write_text(f'[admin]\nlisten = "127.0.0.1:{admin_port}"\n')
    admin = ("127.0.0.1", admin_port)
    async with (
        raw_origin(origin) as upstream,
        cli_proxy(upstream, "--workers", "2", config_dir=str(tmp_path)) as proxy,
    ):
        with trio.fail_after(20):
            assert (await admin_request(admin, b"/healthz")).status == 200
            async with Client.connect(proxy.address) as client, trio.open_nursery() as nursery:
                replies = client.request_soon(nursery, b"GET", b"/slow")
                await origin.arrived.wait()
                proxy.process.send_signal(signal.SIGTERM)
                await proxy.wait_for_output(lambda: b"SIGTERM: stopping 2" in proxy.stderr)
                draining = await admin_request(admin, b"/healthz")
                not_ready = await admin_request(admin, b"/readyz")
                origin.release.set()
            assert await wait_for_exit(proxy.process) == 0
    assert draining.status == 503 and not_ready.status == 503
    assert replies[0].status == 200  # the drain let it finish
