"""``--workers N``: processes sharing one listening socket, restarted when they die, drained on
SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import trio

from trioproxy.app._channel import FrameBuffer, frame
from trioproxy.app._supervisor import Supervisor
from trioproxy.app._workerlink import WorkerChannel
from trioproxy.core._accesslog import AccessRecord
from trioproxy.engine._metrics import MetricsSnapshot, RequestMetrics, merge_snapshots

from ..cli_support import cli_proxy, wait_for_exit
from ..support import Client
from .test_admin import admin_request, scrape, total, value


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


async def _free_port() -> int:
    with trio.socket.socket() as probe:
        await probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_the_supervisor_serves_the_sum_of_the_workers_metrics(
    origin: tuple[str, int], tmp_path: Path
) -> None:
    admin_port = await _free_port()
    (tmp_path / "trioproxy.toml").write_text(f'[admin]\nlisten = "127.0.0.1:{admin_port}"\n')
    admin = ("127.0.0.1", admin_port)
    async with cli_proxy(origin, "--workers", "2", config_dir=str(tmp_path)) as proxy:
        assert f"admin listener on 127.0.0.1:{admin_port}".encode() in proxy.stderr
        assert (await admin_request(admin, b"/healthz")).status == 200
        ready = await admin_request(admin, b"/readyz")
        assert (ready.status, ready.body) == (200, b"ready\n")  # the origin is up
        assert (await admin_request(admin, b"/nope")).status == 404
        refused = await admin_request(admin, b"/metrics", method=b"POST")
        assert (refused.status, refused.header(b"allow")) == (405, b"GET, HEAD")
        head = await admin_request(admin, b"/healthz", method=b"HEAD")
        assert (head.status, head.body) == (200, b"")
        # One connection per request: both workers race to accept each of the 40 (measured:
        # 23 and 19), so the sum needs both workers' numbers.
        for index in range(40):
            host = b"a.example" if index % 4 else b"b.example"
            async with Client.connect(proxy.address) as client:
                reply = await client.request(b"GET", b"/", [(b"Host", host)])
                assert reply.status == 200
        with trio.fail_after(10):  # every request has been logged (and so counted)
            await proxy.wait_for_output(lambda: proxy.stdout.count(b"\n") >= 40)
        samples = await scrape(admin)
        workers = _children(proxy.process.pid)
        proxy.process.send_signal(signal.SIGTERM)
        assert await wait_for_exit(proxy.process) == 0, proxy.stderr.decode()
    assert len(workers) == 2
    lines = [json.loads(line) for line in proxy.stdout.decode().splitlines()]
    assert value(samples, "trioproxy_requests_total", code_class="2xx") == 40
    assert value(samples, "trioproxy_downstream_connections_total") == 40
    assert value(samples, "trioproxy_downstream_connections_open") == 0
    assert value(samples, "trioproxy_request_duration_seconds_count") == 40
    assert value(samples, "trioproxy_workers") == 2
    assert value(samples, "trioproxy_response_bytes_total") == sum(int(x["bytes"]) for x in lines)
    section = "section_http_request_count_total"
    assert value(samples, section, hostname="a.example", status="200") == 30
    assert value(samples, section, hostname="b.example", status="200") == 10
    assert total(samples, "section_http_bytes_total") == sum(int(x["bytes"]) for x in lines)


def test_summed_metrics_apply_the_hostname_cap_once() -> None:
    def worker(*hosts: bytes) -> MetricsSnapshot:
        metrics = RequestMetrics(max_hostnames=2)
        for host in hosts:
            metrics.observe(
                AccessRecord(start_wall=0.0, peer="-", host=host, status=200, bytes_sent=10)
            )
        return metrics.snapshot((("gauge", "g", "a gauge", 1.0),))

    merged = merge_snapshots(
        [worker(b"a", b"b", b"a"), worker(b"c", b"b")],
        (("gauge", "w", "workers", 2.0),),
        max_hostnames=2,
    )
    assert sorted(merged.section) == [
        (b"a", 200, 2, 20),
        (b"b", 200, 2, 20),
        (b"other", 200, 1, 10),
    ]
    assert merged.by_class[2] == 5 and merged.bytes_sent == 50
    assert merged.scalars == (("gauge", "g", "a gauge", 2.0), ("gauge", "w", "workers", 2.0))
    assert MetricsSnapshot.from_tuple(merged.as_tuple()) == merged


def test_healthy_means_every_worker_runs_and_accepts() -> None:
    class Process:
        returncode: int | None = None

    def worker(accepting: bool, returncode: int | None = None) -> Any:
        process = Process()
        process.returncode = returncode
        return SimpleNamespace(accepting=accepting, process=process)

    supervisor = Supervisor(["--listen=127.0.0.1:0"], 2, stop_timeout_s=1)
    assert not supervisor.healthy  # none started yet
    supervisor.workers = {0: worker(True), 1: worker(False)}  # worker 1 (re)starting
    assert not supervisor.healthy
    supervisor.workers[1] = worker(True)
    assert supervisor.healthy
    supervisor.workers[1] = worker(True, -9)  # died, not reaped yet
    assert not supervisor.healthy
    supervisor.workers[1] = worker(True)
    supervisor.stopping = True
    assert not supervisor.healthy


def test_a_late_answer_to_an_earlier_question_is_skipped() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        channel = WorkerChannel(ours)
        answers: list[object] = []
        channel.ask(("metrics",), answers.append, now=0.0, timeout_s=1.0)
        channel.ask(("reload", "f", None), answers.append, now=0.0, timeout_s=5.0)
        channel.expire(2.0)  # the metrics question timed out
        assert answers == [None] and channel.waiting_since() == 0.0
        # The worker answers in order: the late metrics answer, then the reload's.
        theirs.sendall(frame(("metrics", (1, 2))) + frame(("ready",)) + frame(("reloaded", "")))
        assert channel.receive() == [("ready",)]  # not an answer: for the supervisor
        assert answers == [None, ("reloaded", "")] and channel.waiting_since() is None
        channel.ask(("ping",), answers.append, now=3.0)
        theirs.sendall(b"\x00\x00\x00\x02xx")  # not a frame of ours
        assert channel.receive() is None
        channel.fail_all()
        assert answers == [None, ("reloaded", ""), None]
        assert FrameBuffer().next() is None
