"""SIGHUP storms and what a reload keeps: one process and two workers, the real CLI.

Config-sync tools send one SIGHUP per changed file. Reloads coalesce (one at a time, at most one
pending) and never hold up the loop that answers /healthz and SIGTERM. A reload line counts the
changes since the reload before it; a deleted file is refused; rate limits keep their buckets.
"""

from __future__ import annotations

import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from ..cli_support import ProxyProcess, cli_proxy, wait_for_exit
from ..support import Client
from .test_admin import admin_request
from .test_reload import OK
from .test_workers import _free_port

WORKERS = pytest.mark.parametrize("workers", ["1", "2"])


def _config(admin_port: int, generation: int) -> str:
    return (
        f'[admin]\nlisten = "127.0.0.1:{admin_port}"\n[timeouts]\ndrain_s = 3\n\n'
        f'[[rules]]\nresponse_headers.set = {{ X-Generation = "{generation}" }}\n'
    )


def _write(config: Path, text: str) -> None:
    config.write_text(text)


async def _generation(proxy: ProxyProcess) -> bytes | None:
    async with Client.connect(proxy.address) as client:
        reply = await client.request(b"GET", b"/", [(b"Connection", b"close")])
        return reply.header(b"x-generation")


async def _storm(
    proxy: ProxyProcess, config: Path, admin_port: int, start: int, count: int = 20
) -> None:
    """``count`` SIGHUPs 20 ms apart, the file rewritten before each (the pacing is the
    storm's, not a synchronisation)."""
    for generation in range(start, start + count):
        _write(config, _config(admin_port, generation))
        proxy.process.send_signal(signal.SIGHUP)
        await trio.sleep(0.02)


@asynccontextmanager
async def _proxy_with_admin(
    origin: tuple[str, int], config_dir: Path, workers: str, generation: int
) -> AsyncIterator[tuple[ProxyProcess, Path, int]]:
    """The command with its admin listener on a free port and the rules of ``generation``:
    the proxy, its configuration file and the admin port."""
    admin_port = await _free_port()
    config = config_dir / "trioproxy.toml"
    config.write_text(_config(admin_port, generation))
    async with cli_proxy(origin, "--workers", workers, config_dir=str(config_dir)) as proxy:
        yield proxy, config, admin_port


@WORKERS
async def test_a_sighup_storm_leaves_healthz_prompt_and_ends_on_the_last_file(
    origin: tuple[str, int], tmp_path: Path, workers: str
) -> None:
    async with _proxy_with_admin(origin, tmp_path, workers, 0) as (proxy, config, admin_port):
        admin = ("127.0.0.1", admin_port)
        # One reload alone, timed: the storm's /healthz must never wait for one.
        started = time.monotonic()
        config.write_text(_config(admin_port, 1))
        await proxy.reload(OK)
        one_reload_s = time.monotonic() - started
        reloads_before = proxy.stderr.count(OK)
        answers: list[tuple[int, float]] = []
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                storm_over = trio.Event()

                async def probe() -> None:
                    while not storm_over.is_set():
                        asked = time.monotonic()
                        reply = await admin_request(admin, b"/healthz")
                        answers.append((reply.status, time.monotonic() - asked))

                nursery.start_soon(probe)
                await _storm(proxy, config, admin_port, 2)
                storm_over.set()
            while await _generation(proxy) != b"21":  # the pending reload read the last file
                await proxy.wait_for_output(lambda: True)
        proxy.process.send_signal(signal.SIGTERM)
        assert await wait_for_exit(proxy.process) == 0, proxy.stderr.decode()
    reloads = proxy.stderr.count(OK) - reloads_before
    took = sorted(seconds for _, seconds in answers)
    print(f"one reload {one_reload_s * 1000:.0f} ms; {reloads} reloads for 20 SIGHUPs; "
          f"/healthz x{len(took)}: median {took[len(took) // 2] * 1000:.1f} ms, "
          f"max {took[-1] * 1000:.1f} ms")  # fmt: skip
    assert {status for status, _ in answers} == {200}
    assert 1 <= reloads <= 20
    if workers == "2":  # a reload (a checker process, then the workers) outlasts 20 ms:
        assert reloads < 10  # coalesced, one at a time and one pending
    assert took[len(took) // 2] < 0.05
    if workers == "2":  # a reload there is long (hundreds of ms): no answer waited for one
        assert took[-1] < one_reload_s
    # (One process reloads in a thread in about 20 ms, as long as one scheduling hiccup of a
    # loaded machine: the median above is what shows the loop was never held.)


@WORKERS
async def test_sigterm_during_a_sighup_storm_exits_within_drain_s(
    origin: tuple[str, int], tmp_path: Path, workers: str
) -> None:
    async with _proxy_with_admin(origin, tmp_path, workers, 0) as (proxy, config, admin_port):
        await _storm(proxy, config, admin_port, 1, 60)  # seconds of reloads, one by one
        proxy.process.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        assert await wait_for_exit(proxy.process, timeout_s=3 + 5) == 0
        took = time.monotonic() - stopped_at
    print(f"SIGTERM to exit: {took:.2f} s")
    assert took < 3  # drain_s


@WORKERS
async def test_a_reload_line_counts_the_changes_since_the_last_reload(
    origin: tuple[str, int], tmp_path: Path, workers: str
) -> None:
    config = tmp_path / "trioproxy.toml"
    config.write_text("[upstream]\npool_size = 8\n")
    async with cli_proxy(origin, "--workers", workers, config_dir=str(tmp_path)) as proxy:
        config.write_text("[upstream]\npool_size = 8\n[timeouts]\nclient_idle_s = 5\n")
        await proxy.reload(OK)
        config.write_text(
            "[upstream]\npool_size = 9\n[timeouts]\nclient_idle_s = 5\nclient_body_s = 5\n"
        )
        await proxy.reload(OK)
        await proxy.reload(OK)  # the same file again
        proxy.process.send_signal(signal.SIGTERM)
        assert await wait_for_exit(proxy.process) == 0
    lines = [line for line in proxy.stderr.decode().splitlines() if ": ok, " in line]
    assert [line.split(": ok, ", 1)[1] for line in lines] == [
        "changed timeouts.client_idle_s",
        "changed timeouts.client_body_s; upstream.pool_size changed but need a restart: "
        "kept as they were",
        # Restart-only keys count since the start: still not in force.
        "no change; upstream.pool_size changed but need a restart: kept as they were",
    ]


@WORKERS
async def test_a_reload_that_finds_no_file_keeps_the_running_configuration(
    origin: tuple[str, int], tmp_path: Path, workers: str
) -> None:
    async with _proxy_with_admin(origin, tmp_path, workers, 1) as (proxy, config, admin_port):
        config.unlink()
        await proxy.reload(b"the file is missing")
        assert await _generation(proxy) == b"1"  # the rules still apply
        config.write_text(_config(admin_port, 2))  # back: the next reload takes it
        await proxy.reload(OK)
        assert await _generation(proxy) == b"2"
        proxy.process.send_signal(signal.SIGTERM)
        assert await wait_for_exit(proxy.process) == 0
    line = next(x for x in proxy.stderr.decode().splitlines() if "missing" in x)
    assert "WARNING" in line and f"reload {config}: rejected (the file is missing)" in line


@WORKERS
async def test_a_reload_keeps_what_clients_spent_of_their_rate_limit(
    origin: tuple[str, int], tmp_path: Path, workers: str
) -> None:
    config = tmp_path / "trioproxy.toml"
    limited = "[[rules]]\nrate_limit = { rate = 0.001, burst = 3 }\n"
    config.write_text(limited)
    async with cli_proxy(origin, "--workers", workers, config_dir=str(tmp_path)) as proxy:
        statuses = []
        for _ in range(3):
            async with Client.connect(proxy.address) as client:
                statuses.append((await client.request(b"GET", b"/")).status)
        config.write_text("[timeouts]\nclient_idle_s = 5\n\n" + limited)  # the rule unchanged
        await proxy.reload(OK)
        for _ in range(3):
            async with Client.connect(proxy.address) as client:
                statuses.append((await client.request(b"GET", b"/")).status)
        proxy.process.send_signal(signal.SIGTERM)
        assert await wait_for_exit(proxy.process) == 0
    assert statuses == [200, 200, 200, 429, 429, 429]
