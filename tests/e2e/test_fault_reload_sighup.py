"""A rule's fault across a real reload (SIGHUP to the command): unchanged at the same place,
it keeps its count, so ``first = 2`` means the first two requests of the run."""

from __future__ import annotations

import signal
from pathlib import Path

from ..cli_support import ProxyProcess, cli_proxy, wait_for_exit
from ..support import Client
from .test_reload import OK

FLAKY = """
[[rules]]
name = "flaky"
match.path_prefix = "/flaky/"
fault = { kind = "answer", status = 503, first = 2 }
"""
OTHER = """
[[rules]]
match.path_prefix = "/other/"
response_headers.set = { "x-other" = "1" }
"""


async def _statuses(proxy: ProxyProcess, count: int) -> list[int]:
    async with Client.connect(proxy.address) as client:  # one connection: one process anyway
        return [(await client.request(b"GET", b"/flaky/1")).status for _ in range(count)]


async def test_a_rule_fault_keeps_its_count_across_sighup(
    origin: tuple[str, int], tmp_path: Path
) -> None:
    config = tmp_path / "trioproxy.toml"
    config.write_text(FLAKY)
    async with cli_proxy(origin, config_dir=str(tmp_path)) as proxy:
        assert await _statuses(proxy, 1) == [503]
        config.write_text(FLAKY + OTHER)  # a change elsewhere: the fault stays as it is
        await proxy.reload(OK)
        assert await _statuses(proxy, 2) == [503, 200]
        proxy.process.send_signal(signal.SIGTERM)
        assert await wait_for_exit(proxy.process) == 0, proxy.stderr.decode()
