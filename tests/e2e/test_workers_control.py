"""``--workers N``: the harness endpoints (/faults, /journal) served by the supervisor for the
whole container, as a harness in any language drives it: a fault added over the admin port
is in force on every worker when the answer comes, counted over all of them, handed to a
worker that restarts; the journal gathers every worker's exchanges in time order."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import trio

from ..cli_support import ProxyProcess, cli_proxy, wait_for_exit
from ..support import Client, Reply
from .test_workers import _children, _free_port

TEAPOT = {"name": "teapot", "kind": "answer", "status": 418, "match": {"path_prefix": "/tea/"}}


async def _admin(address: tuple[str, int], method: bytes, target: bytes, body: Any = None) -> Reply:
    data = b"" if body is None else json.dumps(body).encode()
    with trio.fail_after(10):
        async with Client.connect(address) as client:
            return await client.request(method, target, [], data)


async def _statuses(proxy: ProxyProcess, path: bytes, count: int, body: bytes = b"") -> list[int]:
    """``count`` requests, one connection each (so either worker may take any of them)."""
    statuses = []
    for _ in range(count):
        async with Client.connect(proxy.address) as client:
            method = b"POST" if body else b"GET"
            statuses.append((await client.request(method, path, [], body)).status)
    return statuses


def _config(tmp_path: Path, port: int) -> str:
    (tmp_path / "trioproxy.toml").write_text(
        f'[admin]\nlisten = "127.0.0.1:{port}"\njournal_size = 100\n'
        "journal_body_bytes = 8\nfaults = true\n"
    )
    return str(tmp_path)


async def test_a_fault_reaches_every_worker_and_the_journal_gathers_them_all(
    origin: tuple[str, int], tmp_path: Path
) -> None:
    port = await _free_port()
    admin = ("127.0.0.1", port)
    async with cli_proxy(origin, "--workers", "2", config_dir=_config(tmp_path, port)) as proxy:
        added = await _admin(admin, b"POST", b"/faults", TEAPOT)
        assert (added.status, added.json()["name"]) == (201, "teapot")
        # In force on both workers once answered: no request reaches the origin.
        assert await _statuses(proxy, b"/tea/pot", 20) == [418] * 20
        assert await _statuses(proxy, b"/other", 10, body=b"0123456789abc") == [200] * 10

        (listed,) = (await _admin(admin, b"GET", b"/faults")).json()["faults"]
        assert (listed["name"], listed["seen"], listed["applied"]) == ("teapot", 20, 20)
        assert sorted(w["worker"] for w in listed["workers"]) == [0, 1]
        assert sum(w["seen"] for w in listed["workers"]) == 20

        journal = (await _admin(admin, b"GET", b"/journal")).json()
        entries = journal["entries"]
        assert (journal["workers"], journal["recorded"], len(entries)) == (2, 30, 30)
        # Which worker accepts a connection is the kernel's choice on the one shared socket (a
        # run may give every connection to one): that both workers answered the read is what
        # shows it gathered them all (the merge itself: unit/test_supercontrol.py).
        assert {e["worker"] for e in entries} <= {0, 1}
        ends = [e["end_s"] for e in entries]
        assert ends == sorted(ends)  # one clock for every worker: in the order they ended
        assert [e["target"] for e in entries] == ["/tea/pot"] * 20 + ["/other"] * 10
        assert {e["request_body_prefix"] for e in entries[20:]} == {"01234567"}
        filtered = (await _admin(admin, b"GET", b"/journal?status=418")).json()
        assert len(filtered["entries"]) == 20

        removed = await _admin(admin, b"DELETE", b"/faults/teapot")
        assert (removed.status, removed.json()["seen"]) == (200, 20)
        assert await _statuses(proxy, b"/tea/pot", 4) == [200] * 4
        missing = await _admin(admin, b"DELETE", b"/faults/teapot")
        assert missing.status == 404 and "no fault named 'teapot'" in missing.json()["error"]
        cleared = await _admin(admin, b"DELETE", b"/journal")
        assert cleared.json() == {"cleared": 34}
        assert (await _admin(admin, b"GET", b"/journal")).json()["entries"] == []
        proxy.process.send_signal(signal.SIGTERM)
        assert await wait_for_exit(proxy.process) == 0, proxy.stderr.decode()


async def test_a_restarted_worker_is_handed_the_faults_the_others_have(
    origin: tuple[str, int], tmp_path: Path
) -> None:
    port = await _free_port()
    admin = ("127.0.0.1", port)
    async with cli_proxy(origin, "--workers", "2", config_dir=_config(tmp_path, port)) as proxy:
        assert (await _admin(admin, b"POST", b"/faults", TEAPOT)).status == 201
        os.kill(min(_children(proxy.process.pid)), signal.SIGKILL)
        with trio.fail_after(10):  # the replacement listens, and the supervisor has seen it
            await proxy.wait_for_output(lambda: proxy.stderr.count(b"]: listening on") >= 3)
            while True:
                reply = await _admin(admin, b"GET", b"/faults")
                if reply.status == 200 and len(reply.json()["faults"][0]["workers"]) == 2:
                    break
                await trio.sleep(0.05)
        assert await _statuses(proxy, b"/tea/pot", 20) == [418] * 20
        proxy.process.send_signal(signal.SIGTERM)
        assert await wait_for_exit(proxy.process) == 0, proxy.stderr.decode()


async def test_without_runtime_faults_allowed_a_change_is_refused_by_every_worker(
    origin: tuple[str, int], tmp_path: Path
) -> None:
    port = await _free_port()
    (tmp_path / "trioproxy.toml").write_text(f'[admin]\nlisten = "127.0.0.1:{port}"\n')
    admin = ("127.0.0.1", port)
    async with cli_proxy(origin, "--workers", "2", config_dir=str(tmp_path)) as proxy:
        refused = await _admin(admin, b"POST", b"/faults", TEAPOT)
        assert refused.status == 403 and "admin.faults = true" in refused.json()["error"]
        assert (await _admin(admin, b"GET", b"/faults")).json() == {"faults": []}
        off = await _admin(admin, b"GET", b"/journal")
        assert off.status == 404 and "admin.journal_size" in off.json()["error"]
        wrong = await _admin(admin, b"PUT", b"/faults")
        assert (wrong.status, wrong.header(b"allow")) == (405, b"GET, HEAD, POST, DELETE")
        proxy.process.send_signal(signal.SIGTERM)
        assert await wait_for_exit(proxy.process) == 0, proxy.stderr.decode()
