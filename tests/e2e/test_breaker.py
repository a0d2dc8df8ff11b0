"""The circuit breaker through the real CLI: a next hop that refuses connections gets 503s
with Retry-After at once once the breaker opens, and a probe after the cooldown closes it
when the next hop listens again; stderr says both, the access log says 503."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import trio

from ..cli_support import cli_proxy, wait_for_exit
from ..support import Client, read_head

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


async def answer_ok(stream: trio.SocketStream) -> None:
    async with stream:
        while await read_head(stream):
            await stream.send_all(OK)


async def test_a_refusing_next_hop_trips_the_breaker_and_a_probe_closes_it(
    tmp_path: Path,
) -> None:
    (tmp_path / "trioproxy.toml").write_text(
        "[upstream]\nbreaker_failures = 2\nbreaker_cooldown_s = 0.5\n"
    )
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))  # bound, not listening: connects are refused
        async with cli_proxy(sock.getsockname(), config_dir=str(tmp_path)) as proxy:
            async with Client.connect(proxy.address) as client:
                refused = [(await client.request(b"GET", b"/")).status for _ in range(2)]
                tripped = await client.request(b"GET", b"/")
                sock.listen()  # the next hop is back
                async with trio.open_nursery() as nursery:
                    listener = trio.SocketListener(sock)
                    nursery.start_soon(trio.serve_listeners, answer_ok, [listener])
                    # As a client would: come back after Retry-After (the cooldown is over).
                    await trio.sleep(int(tripped.header(b"retry-after") or 0))
                    reply = await client.request(b"GET", b"/")
                    nursery.cancel_scope.cancel()
            await proxy.wait_for_output(lambda: b"circuit breaker closed" in proxy.stderr)
            proxy.process.send_signal(signal.SIGTERM)
            assert await wait_for_exit(proxy.process) == 0
    assert refused == [502, 502]
    assert (tripped.status, tripped.header(b"retry-after")) == (503, b"1")
    assert reply.status == 200
    statuses = [json.loads(line)["status"] for line in proxy.stdout.decode().splitlines()]
    assert statuses == ["502", "502", "503", "200"]
    stderr = proxy.stderr.decode()
    assert "WARNING trioproxy: circuit breaker opened: upstream 127.0.0.1:" in stderr
    assert "INFO trioproxy: circuit breaker closed: upstream 127.0.0.1:" in stderr
