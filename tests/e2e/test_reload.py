"""SIGHUP: reload trioproxy.toml under load, on one process and on two workers.

"The reload returned" is the proxy's ``reload ...: ok`` line on stderr: with workers the
supervisor prints it only once every worker has taken the new configuration. From then on,
every request that starts (on any connection, new or kept alive) must see the new rules.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import trio

from trioproxy.config._settings import Forwarding, Limits, Settings, Upstream
from trioproxy.engine._memory import memory_transport_pair
from trioproxy.engine._peer import Downstream, server_h11
from trioproxy.engine._server import ProxyServer

from ..cli_support import ReloadLoad, cli_proxy, wait_for_exit
from ..support import Client, raw_origin, read_head
from .test_workers import _children

OK = b": ok, "
REJECTED = b": rejected ("


def _rules(generation: int, *, log_format: str = "json") -> str:
    return (
        f'[access_log]\nformat = "{log_format}"\n\n'
        f'[[rules]]\nresponse_headers.set = {{ X-Generation = "{generation}" }}\n'
    )


def _generation(reply_header: bytes | None) -> int:
    return int(reply_header) if reply_header is not None else -1


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_reloads_under_load_fail_nothing_and_apply_at_once(
    origin: tuple[str, int], tmp_path: Path, workers: str
) -> None:
    config = tmp_path / "trioproxy.toml"
    # Each connection closes after 100 requests: the clients reconnect as browsers do (at the
    # default 1000, whether one reached it depended on the machine's speed).
    keepalive = "\n[limits]\nkeepalive_requests = 100\n"
    config.write_text(_rules(0) + keepalive)
    load = ReloadLoad()

    async with cli_proxy(origin, "--workers", workers, config_dir=str(tmp_path)) as proxy:
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for _ in range(6):
                    nursery.start_soon(load.client, proxy.address)
                for generation in range(1, 6):
                    await load.wait_for_more(200)
                    if generation == 3:  # an invalid file in between: rejected, nothing changes
                        config.write_text('[[rules]]\nmatch.path = "no-slash"\n')
                        await proxy.reload(REJECTED)
                    config.write_text(_rules(generation) + keepalive)
                    await proxy.reload(OK)
                    load.returned = generation
                    async with Client.connect(proxy.address) as fresh:
                        reply = await fresh.request(b"GET", b"/")
                    assert _generation(reply.header(b"x-generation")) == generation
                    await trio.sleep(0.5)  # pacing: the load runs for seconds, not a sync
                await load.wait_for_more(200)
                load.stop.set()
        proxy.process.send_signal(signal.SIGTERM)
        assert await wait_for_exit(proxy.process) == 0, proxy.stderr.decode()
    assert load.failures == []
    stderr = proxy.stderr.decode()
    assert stderr.count(": ok, changed rules") == 5, stderr
    assert stderr.count("rejected (1 problem(s) above)") == 1
    assert "path: expected" in stderr or "match.path" in stderr  # the problem itself, named
    assert load.done >= 1200
    # Every request logged once, whole: nothing was dropped across the swaps.
    assert proxy.stdout.count(b"\n") == load.done + 5


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_a_request_in_flight_finishes_under_the_old_configuration(
    tmp_path: Path, workers: str
) -> None:
    arrived = trio.Event()
    release = trio.Event()

    async def origin(stream: trio.SocketStream) -> None:
        while head := await read_head(stream):
            if head.startswith(b"GET /slow "):
                arrived.set()
                await release.wait()
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    config = tmp_path / "trioproxy.toml"
    config.write_text(_rules(1))
    async with (
        raw_origin(origin) as upstream,
        cli_proxy(upstream, "--workers", workers, config_dir=str(tmp_path)) as proxy,
    ):
        with trio.fail_after(20):
            async with Client.connect(proxy.address) as slow, trio.open_nursery() as nursery:
                replies = []

                async def slow_request() -> None:
                    replies.append(await slow.request(b"GET", b"/slow"))

                nursery.start_soon(slow_request)
                await arrived.wait()
                config.write_text(_rules(2, log_format="ltsv"))
                await proxy.reload(OK)
                async with Client.connect(proxy.address) as fresh:
                    after = await fresh.request(b"GET", b"/fast")
                release.set()
            await proxy.wait_for_output(lambda: proxy.stdout.count(b"\n") >= 2)
        proxy.process.send_signal(signal.SIGTERM)
        assert await wait_for_exit(proxy.process) == 0
    assert replies[0].header(b"x-generation") == b"1"  # the rules it started with
    assert after.header(b"x-generation") == b"2"
    # Two workers write their lines each through its own writer: in either order.
    lines = proxy.stdout.decode().splitlines()
    assert len(lines) == 2
    fast = next(line for line in lines if "path:/fast" in line)
    slow_line = next(line for line in lines if line is not fast)
    assert fast.startswith("time:") and "\tpath:/fast" in fast  # new format: LTSV
    assert json.loads(slow_line)["path"] == "/slow"  # old format: JSON
    assert "changed access_log.format, rules" in proxy.stderr.decode()


async def test_restart_only_settings_are_named_and_kept(
    origin: tuple[str, int], tmp_path: Path
) -> None:
    ports = []
    for _ in range(2):
        with trio.socket.socket() as probe:
            await probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
    config = tmp_path / "trioproxy.toml"
    config.write_text(f'[admin]\nlisten = "127.0.0.1:{ports[0]}"\n')
    async with cli_proxy(origin, config_dir=str(tmp_path)) as proxy:
        config.write_text(
            f'[admin]\nlisten = "127.0.0.1:{ports[1]}"\n[timeouts]\nclient_idle_s = 5\n'
        )
        await proxy.reload(OK)
        async with Client.connect(("127.0.0.1", ports[0])) as admin:
            assert (await admin.request(b"GET", b"/healthz")).status == 200
        proxy.process.send_signal(signal.SIGTERM)
        assert await wait_for_exit(proxy.process) == 0
    line = next(x for x in proxy.stderr.decode().splitlines() if ": ok, " in x)
    assert "WARNING" in line
    assert "changed timeouts.client_idle_s; admin.listen changed but need a restart" in line


async def test_a_worker_restarted_after_a_rejected_reload_runs_the_last_good_one(
    origin: tuple[str, int], tmp_path: Path
) -> None:
    config = tmp_path / "trioproxy.toml"
    config.write_text(_rules(1))
    async with cli_proxy(origin, "--workers", "2", config_dir=str(tmp_path)) as proxy:
        config.write_text(_rules(2))
        await proxy.reload(OK)
        config.write_text('[[rules]]\nmatch.path = "no-slash"\n')
        await proxy.reload(REJECTED)
        victim = min(_children(proxy.process.pid))
        os.kill(victim, signal.SIGKILL)
        with trio.fail_after(10):  # the replacement is ready
            await proxy.wait_for_output(lambda: proxy.stderr.count(b"]: listening on") >= 3)
        generations = set()
        for _ in range(20):  # new connections: both workers, the replacement among them
            async with Client.connect(proxy.address) as client:
                reply = await client.request(b"GET", b"/", [(b"Connection", b"close")])
                generations.add(reply.header(b"x-generation"))
        proxy.process.send_signal(signal.SIGTERM)
        assert await wait_for_exit(proxy.process) == 0
    assert generations == {b"2"}


async def test_a_reload_shares_the_connection_state_and_takes_the_new_pool_caps() -> None:
    # The merge of the process model with the isolation work: the context a reload puts in
    # place shares the idle connections (oldest first) and the draining flag with the first
    # one, the pool takes the new caps (its idle size stays), the resolver the new TTLs, and
    # forwarding the new trusted proxies.
    server = ProxyServer(Settings(), ("127.0.0.1", 9), lambda record: None)
    first = server.ctx
    assert first.now() is first and first.forwarding.trusts("192.0.2.1")
    older, newer = (Downstream(memory_transport_pair()[0], server_h11(Limits())) for _ in "ab")
    first.idle.add(older, 75.0)
    upstream = Upstream(
        pool_size=8, max_connections=5, max_connection_age_s=7.0, dns_negative_ttl_s=3.0
    )
    forwarding = Forwarding(trusted_proxies=("10.0.0.0/8",))
    server.reload(Settings(upstream=upstream, forwarding=forwarding), lambda record: None)
    current = first.now()
    assert current is not first and current.settings.upstream.max_connections == 5
    assert (server.pool.limits.max_connections, server.pool.limits.max_age_s) == (5, 7.0)
    assert server.pool.limits.size == Settings().upstream.pool_size
    assert server.pool.resolver.negative_ttl_s == 3.0
    assert current.forwarding.trusts("10.1.2.3") and not current.forwarding.trusts("192.0.2.1")
    current.idle.add(newer, 5.0)  # a shorter wait does not make it the older one
    assert first.idle is current.idle
    assert current.close_oldest_idle() and older.closed and not newer.closed
    first.start_draining()
    assert current.draining and newer.closed
