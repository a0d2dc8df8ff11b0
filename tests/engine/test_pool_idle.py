"""The idle limit of pooled upstream connections (`upstream.idle_timeout_s`) holds when a
connection is taken from the pool, not only when the reaper passes.

The reaper runs every ``idle_timeout_s / 2``: between two of its runs a connection can sit
idle past the limit. Reused then, it may meet an origin that has just dropped it (Node's
keep-alive timeout is 5 s, nodejs/node#20256): the check on acquire is what keeps a
connection idle 4.9 s out of use.
"""

from __future__ import annotations

import trio
import trio.testing

from trioproxy.config._settings import Settings
from trioproxy.engine._pool import PoolLimits

from ..memnet import MemoryNetwork, ScriptedOrigin, memory_origin, memory_proxy
from ..support import make_settings

NODE_KEEPALIVE_TIMEOUT_S = 5.0  # Node's http.Server keepAliveTimeout default


async def test_a_connection_idle_past_the_limit_is_not_reused_though_the_reaper_has_not_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network, origin = MemoryNetwork(), ScriptedOrigin()
    settings = make_settings(upstream__idle_timeout_s=4.0)  # the reaper runs at 2, 4, 6, ...
    async with memory_origin(network, origin), memory_proxy(settings, network) as proxy:
        pool = proxy.server.pool
        await trio.sleep(1.0)
        async with proxy.client() as client:
            assert (await client.request(b"GET", b"/small")).status == 200
            idle_from = trio.current_time()
            await trio.sleep(4.9)  # to 5.9: past the limit, before the reaper's run at 6
            assert pool.idle_count == 1 and pool.stats.expired == 0  # still pooled
            assert (await client.request(b"GET", b"/small")).status == 200
            assert trio.current_time() - idle_from < 6.0 - 1.0  # no reaper run in between
    assert origin.accepted == 2  # a fresh connection, not the one idle 4.9 s
    assert (pool.stats.reused, pool.stats.expired) == (0, 1)


async def test_a_connection_idle_within_the_limit_is_reused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The control: the same run, idle 3.9 s.
    network, origin = MemoryNetwork(), ScriptedOrigin()
    settings = make_settings(upstream__idle_timeout_s=4.0)
    async with memory_origin(network, origin), memory_proxy(settings, network) as proxy:
        await trio.sleep(1.0)
        async with proxy.client() as client:
            assert (await client.request(b"GET", b"/small")).status == 200
            await trio.sleep(3.9)
            assert (await client.request(b"GET", b"/small")).status == 200
    assert origin.accepted == 1
    assert proxy.server.pool.stats.reused == 1


def test_the_idle_timeout_default_stays_below_nodes_keep_alive_timeout() -> None:
    # 4 s: shorter than Node's 5 s keepAliveTimeout, the commonest origin's, so the proxy
    # drops an idle connection before the origin does (nginx's upstream keepalive_timeout is
    # 60 s, which is what gives nginx-fronted Node apps their intermittent 502s).
    assert Settings().upstream.idle_timeout_s == 4.0
    assert PoolLimits().idle_timeout_s == 4.0
    assert Settings().upstream.idle_timeout_s < NODE_KEEPALIVE_TIMEOUT_S
