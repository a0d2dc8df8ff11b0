"""Trace context on the memory network: traceparent and tracestate travel on unchanged; a
valid traceparent's IDs reach the access record and the request's diagnostics lines; a
malformed one, or none, changes nothing."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing

from ..memnet import MemoryNetwork, ScriptedOrigin, memory_origin, memory_proxy

TRACE = b"4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = b"00f067aa0ba902b7"
TRACEPARENT = b"00-" + TRACE + b"-" + PARENT + b"-01"
TRACESTATE = b"congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"


def received(origin: ScriptedOrigin, name: bytes) -> list[bytes]:
    return [v for k, v in origin.heads[-1].headers if k == name]


async def test_the_ids_are_logged_and_both_headers_forwarded_unchanged(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network, origin = MemoryNetwork(), ScriptedOrigin()
    headers = [(b"traceparent", TRACEPARENT), (b"tracestate", TRACESTATE)]
    async with memory_origin(network, origin), memory_proxy(network=network) as proxy:
        async with proxy.client() as client:
            reply = await client.request(b"GET", b"/small", headers)
        await proxy.logged()
    assert reply.status == 200
    assert received(origin, b"traceparent") == [TRACEPARENT]
    assert received(origin, b"tracestate") == [TRACESTATE]
    assert (proxy.records[0].trace_id, proxy.records[0].span_id) == (TRACE, PARENT)


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [(b"traceparent", TRACEPARENT.upper())],
        [(b"traceparent", TRACEPARENT), (b"traceparent", TRACEPARENT)],
    ],
    ids=["none", "malformed", "twice"],
)
async def test_without_a_valid_traceparent_nothing_changes(
    autojump_clock: trio.testing.MockClock, headers: list[tuple[bytes, bytes]]
) -> None:
    network, origin = MemoryNetwork(), ScriptedOrigin()
    async with memory_origin(network, origin), memory_proxy(network=network) as proxy:
        async with proxy.client() as client:
            reply = await client.request(b"GET", b"/small", [*headers, (b"tracestate", b"a=b")])
        await proxy.logged()
    assert reply.status == 200  # never an error for the request
    assert received(origin, b"traceparent") == [value for _, value in headers]
    assert (proxy.records[0].trace_id, proxy.records[0].span_id) == (b"", b"")


async def test_the_requests_diagnostics_lines_carry_the_ids(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with memory_proxy() as proxy:  # no origin: the connect is refused, a WARNING
        async with proxy.client() as client:
            reply = await client.request(b"GET", b"/", [(b"traceparent", TRACEPARENT)])
            untraced = await client.request(b"GET", b"/")
    assert (reply.status, untraced.status) == (502, 502)
    traced_line, untraced_line = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert (traced_line.trace_id, traced_line.span_id) == (TRACE.decode(), PARENT.decode())  # type: ignore[attr-defined]
    assert not hasattr(untraced_line, "trace_id")
