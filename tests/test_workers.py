"""``--workers N``: processes sharing the port, restarted when they die, drained on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import trio

from .cli_support import cli_proxy, wait_for_exit
from .support import Client


def _children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


async def _get(address: tuple[str, int]) -> int:
    async with Client.connect(address) as client:
        return (await client.request(b"GET", b"/", [(b"Connection", b"close")])).status


async def test_workers_serve_restart_and_drain(origin: tuple[str, int]) -> None:
    async with cli_proxy(origin, "--workers", "2") as proxy:
        assert b"(2 workers)" in proxy.stderr
        workers = _children(proxy.process.pid)
        assert len(workers) == 2
        assert [await _get(proxy.address) for _ in range(20)] == [200] * 20

        with trio.fail_after(10):  # the writer threads have flushed: a SIGKILL loses nothing
            await proxy.wait_for_output(lambda: proxy.stdout.count(b"\n") >= 20)
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        with trio.fail_after(10):  # the replacement is ready
            await proxy.wait_for_output(lambda: proxy.stderr.count(b"]: listening on") >= 3)
        replacement = _children(proxy.process.pid) - workers
        assert len(replacement) == 1 and victim not in _children(proxy.process.pid)
        assert [await _get(proxy.address) for _ in range(20)] == [200] * 20

        proxy.process.send_signal(signal.SIGTERM)
        assert await wait_for_exit(proxy.process) == 0, proxy.stderr.decode()
    assert not _children(proxy.process.pid)
    lines = proxy.stdout.decode().splitlines()
    assert len(lines) == 40  # every request logged once, each line whole
    assert all(json.loads(line)["status"] == "200" for line in lines)
    assert b"signal SIGKILL" in proxy.stderr


async def test_workers_stop_when_the_supervisor_is_killed(origin: tuple[str, int]) -> None:
    async with cli_proxy(origin, "--workers", "2") as proxy:
        workers = _children(proxy.process.pid)
        assert len(workers) == 2
        proxy.process.kill()  # SIGKILL: no chance to pass anything on
        await wait_for_exit(proxy.process)
        with trio.fail_after(10):
            # The process table has no event to wait on: poll it, briefly and bounded.
            while any(Path(f"/proc/{pid}").exists() for pid in workers):  # noqa: ASYNC110, ASYNC240
                await trio.sleep(0.05)
    assert b"supervisor gone: stopping" in proxy.stderr
