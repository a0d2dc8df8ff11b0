"""A worker that stops answering (SIGSTOP) is noticed, killed and replaced, and costs nothing
meanwhile: the workers accept from the one socket the supervisor bound, so a stopped worker
takes no connection it does not accept."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import trio

from ..cli_support import cli_proxy, wait_for_exit
from ..support import Client
from .test_admin import admin_request, scrape, value
from .test_workers import _children, _free_port

KILLED = b"has not answered for"


async def _get(address: tuple[str, int]) -> int:
    with trio.fail_after(5):  # a connection handed to the stopped worker would never answer
        async with Client.connect(address) as client:
            reply = await client.request(b"GET", b"/", [(b"Connection", b"close")])
            return reply.status


async def test_a_stopped_worker_is_replaced_within_3_s_and_loses_no_connection(
    origin: tuple[str, int], tmp_path: Path
) -> None:
    admin_port = await _free_port()
    admin = ("127.0.0.1", admin_port)
    (tmp_path / "trioproxy.toml").write_text(f'[admin]\nlisten = "127.0.0.1:{admin_port}"\n')
    async with cli_proxy(origin, "--workers", "2", config_dir=str(tmp_path)) as proxy:
        victim = min(_children(proxy.process.pid))
        os.kill(victim, signal.SIGSTOP)
        stopped_at = time.monotonic()
        # Before it is noticed, new connections go to the other worker: none is lost.
        statuses = [await _get(proxy.address) for _ in range(20)]
        with trio.fail_after(10):
            await proxy.wait_for_output(lambda: KILLED in proxy.stderr)
            noticed_s = time.monotonic() - stopped_at
            missing = await admin_request(admin, b"/healthz")  # the replacement is starting
            await proxy.wait_for_output(lambda: proxy.stderr.count(b"]: listening on") >= 3)
            replaced_s = time.monotonic() - stopped_at
        assert victim not in _children(proxy.process.pid)
        statuses += [await _get(proxy.address) for _ in range(20)]
        healthy = await admin_request(admin, b"/healthz")
        samples = await scrape(admin)
        proxy.process.send_signal(signal.SIGTERM)
        assert await wait_for_exit(proxy.process) == 0, proxy.stderr.decode()
    print(f"noticed after {noticed_s:.2f} s, replaced after {replaced_s:.2f} s")
    assert noticed_s < 2.5 and replaced_s < 3
    assert statuses == [200] * 40
    assert (missing.status, healthy.status) == (503, 200)
    assert value(samples, "trioproxy_workers_hung_total") == 1
    assert value(samples, "trioproxy_workers") == 2
    assert f"(pid {victim}) has not answered for 1.5s: killing it".encode() in proxy.stderr


async def test_a_second_instance_on_the_port_fails_to_start(origin: tuple[str, int]) -> None:
    async with cli_proxy(origin, "--workers", "2") as first:
        for workers in ("2", "1"):
            with trio.fail_after(20):
                second = await trio.run_process(
                    [
                        *(sys.executable, "-m", "trioproxy", "--listen", f"127.0.0.1:{first.port}"),
                        *("--upstream", f"{origin[0]}:{origin[1]}", "--workers", workers),
                    ],
                    capture_stderr=True,
                    check=False,
                )
            assert second.returncode == 1, second.stderr.decode()
            assert b"Address already in use" in second.stderr
        assert await _get(first.address) == 200  # the first is undisturbed
        first.process.send_signal(signal.SIGTERM)
        assert await wait_for_exit(first.process) == 0
