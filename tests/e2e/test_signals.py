"""A second SIGTERM stops at once, skipping the drain, with the same exit status (0) in one
process and with workers."""

from __future__ import annotations

import contextlib
import signal
from pathlib import Path

import pytest
import trio

from ..cli_support import cli_proxy, wait_for_exit
from ..support import Client, raw_origin, read_head


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_a_second_sigterm_stops_at_once_with_status_0(tmp_path: Path, workers: str) -> None:
    arrived = trio.Event()

    async def stuck_origin(stream: trio.SocketStream) -> None:
        if await read_head(stream):
            arrived.set()
            await trio.sleep_forever()  # a request the drain would wait 60 s for

    (tmp_path / "trioproxy.toml").write_text("[timeouts]\ndrain_s = 60\n")
    async with (
        raw_origin(stuck_origin) as upstream,
        cli_proxy(upstream, "--workers", workers, config_dir=str(tmp_path)) as proxy,
        Client.connect(proxy.address) as client,
        trio.open_nursery() as nursery,
    ):

        async def stuck_request() -> None:
            with contextlib.suppress(Exception):  # cut by the stop: no answer to wait for
                await client.request(b"GET", b"/stuck")

        nursery.start_soon(stuck_request)
        with trio.fail_after(10):
            await arrived.wait()
        proxy.process.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            await proxy.wait_for_output(lambda: b"SIGTERM: stopping" in proxy.stderr)
        proxy.process.send_signal(signal.SIGTERM)
        assert await wait_for_exit(proxy.process, timeout_s=10) == 0, proxy.stderr.decode()
        nursery.cancel_scope.cancel()
    assert b"SIGTERM again: stopping" in proxy.stderr
