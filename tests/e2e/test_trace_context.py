"""Trace context through the real CLI: a request's traceparent IDs in its JSON access line
and on its diagnostics line, both headers forwarded unchanged, and a malformed one ignored."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import trio

from ..cli_support import cli_proxy, wait_for_exit
from ..support import Client, raw_origin, read_head

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE}-{PARENT}-01".encode()


async def echo_head(stream: trio.SocketStream) -> None:
    """Answers with the request head it received, as its body."""
    while head := await read_head(stream):
        await stream.send_all(
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(head), head)
        )


async def test_trace_ids_join_the_access_line_and_the_diagnostics_line(tmp_path: Path) -> None:
    (tmp_path / "trioproxy.toml").write_text('[[rules]]\nmatch.path = "/no"\ndeny = true\n')
    traced = [(b"traceparent", TRACEPARENT), (b"tracestate", b"congo=t61rcWkgMzE")]
    async with raw_origin(echo_head) as origin:
        async with cli_proxy(origin, "--log-level", "debug", config_dir=str(tmp_path)) as proxy:
            async with Client.connect(proxy.address) as client:
                forwarded = await client.request(b"GET", b"/", traced)
                denied = await client.request(b"GET", b"/no", traced)
                malformed = await client.request(b"GET", b"/", [(b"traceparent", b"00-zz")])
            await proxy.wait_for_output(lambda: proxy.stdout.count(b"\n") == 3)
            proxy.process.send_signal(signal.SIGTERM)
            assert await wait_for_exit(proxy.process) == 0
    assert b"\r\ntraceparent: " + TRACEPARENT + b"\r\n" in forwarded.body
    assert b"\r\ntracestate: congo=t61rcWkgMzE\r\n" in forwarded.body
    assert denied.status == 403
    assert (malformed.status, b"\r\ntraceparent: 00-zz\r\n" in malformed.body) == (200, True)
    lines = [json.loads(line) for line in proxy.stdout.decode().splitlines()]
    assert [(line["trace_id"], line["span_id"]) for line in lines] == [
        (TRACE, PARENT),
        (TRACE, PARENT),
        ("-", "-"),
    ]
    (rule_line,) = [line for line in proxy.stderr.decode().splitlines() if "rules[1]" in line]
    assert f"request_id={lines[1]['request_id']}" in rule_line
    assert rule_line.endswith(f" trace_id={TRACE} span_id={PARENT}")
