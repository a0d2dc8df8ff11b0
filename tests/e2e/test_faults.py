"""Faults over real sockets, a representative set from each entry point: trioproxy.toml
through the real command (and the container's admin JSON with it), and ``proxy.fault`` on an
embedded proxy. The engine tests (tests/engine/test_faults.py) cover every kind; these show
the same faults reach a real client over TCP: a reset is a TCP RST, a dribble is paced."""

from __future__ import annotations

import json
from pathlib import Path

import trio

from trioproxy import running

from ..cli_support import cli_proxy
from ..support import Client, answering_every, raw_origin
from .test_workers import _free_port

GET = b"GET %s HTTP/1.1\r\nHost: test.example\r\n\r\n"


_origin = answering_every(b"HTTP/1.1 200 OK\r\nContent-Length: 20000\r\n\r\n" + b"o" * 20_000)


async def _raw(address: tuple[str, int], data: bytes) -> tuple[bytes, str]:
    """Send ``data``; what came back until the connection ended, and how it ended."""
    stream = await trio.open_tcp_stream(*address)
    async with stream:
        await stream.send_all(data)
        received = b""
        while True:
            try:
                chunk = await stream.receive_some(65536)
            except trio.BrokenResourceError:
                return received, "reset"
            if not chunk:
                return received, "eof"
            received += chunk


CONFIG = """
[admin]
listen = "127.0.0.1:{admin}"
journal_size = 50
faults = true

[[rules]]
match.path_prefix = "/flaky/"
fault = {{ kind = "answer", status = 503, retry_after_s = 2, first = 2 }}

[[rules]]
match.path = "/cut"
fault = {{ kind = "reset", at = "body", after_bytes = 1000 }}
"""


async def _admin(
    port: int, method: bytes, target: bytes, body: object = None
) -> tuple[int, object]:
    data = b"" if body is None else json.dumps(body).encode()
    async with Client.connect(("127.0.0.1", port)) as client:
        reply = await client.request(method, target, body=data)
    return reply.status, reply.json()


async def test_faults_from_the_configuration_and_the_admin_json_through_the_command(
    tmp_path: Path,
) -> None:
    admin = await _free_port()
    (tmp_path / "trioproxy.toml").write_text(CONFIG.format(admin=admin))
    config_dir = str(tmp_path)
    async with (
        raw_origin(_origin) as upstream,
        cli_proxy(upstream, config_dir=config_dir) as proxy,
    ):
        with trio.fail_after(30):
            async with Client.connect(proxy.address) as client:
                statuses = [(await client.request(b"GET", b"/flaky/1")).status for _ in range(2)]
            async with Client.connect(proxy.address) as client:
                statuses.append((await client.request(b"GET", b"/flaky/1")).status)
            assert statuses == [503, 503, 200]
            received, ending = await _raw(proxy.address, GET % b"/cut")
            head, _, body = received.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 ") and body == b"o" * 1000
            assert ending == "reset"
            # A harness adds a fault as JSON, sees it act, reads the journal, removes it.
            fault = {"name": "teapot", "kind": "answer", "status": 418, "match": {"path": "/t"}}
            assert (await _admin(admin, b"POST", b"/faults", fault))[0] == 201
            async with Client.connect(proxy.address) as client:
                assert (await client.request(b"GET", b"/t")).status == 418
            status, journal = await _admin(admin, b"GET", b"/journal?fault=teapot")
            assert status == 200 and [e["status"] for e in journal["entries"]] == [418]  # type: ignore[index]
            assert (await _admin(admin, b"DELETE", b"/faults/teapot"))[0] == 200
            async with Client.connect(proxy.address) as client:
                assert (await client.request(b"GET", b"/t")).status == 200


async def test_proxy_fault_on_an_embedded_proxy_over_tcp() -> None:
    async with raw_origin(_origin) as upstream, running(upstream, journal_size=10) as proxy:
        with trio.fail_after(30):
            async with proxy.fault(kind="reset", at="after_head", first=1):
                received, ending = await _raw(proxy.address, GET % b"/")
                assert received.startswith(b"HTTP/1.1 200 ") and received.endswith(b"\r\n\r\n")
                assert ending == "reset"
                received, ending = await _raw(
                    proxy.address, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                )
                assert received.endswith(b"o" * 20_000) and ending == "eof"
            async with proxy.fault(kind="bandwidth", bytes_per_s=100_000):
                started = trio.current_time()
                async with Client.connect(proxy.address) as client:
                    assert len((await client.request(b"GET", b"/")).body) == 20_000
                # 20 kB at 100 kB/s after the first 50 ms worth: 0.15 s at least
                assert trio.current_time() - started >= 0.149
        entries = list(proxy.journal)
        assert [e.faults for e in entries] == [
            ("reset@client:after_head",),
            (),
            ("bandwidth@client:body",),
        ]
