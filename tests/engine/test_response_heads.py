"""One writer of response heads: a rule's answer, an error answer, a rejected head, the
origin's response and a 101 all go through `Responder.queue_head` (the seam where hooks and
faults act on a response head), which owns ``Connection: close`` and the record's status,
body start and content type."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import trio
import trio.testing

from trioproxy.config._config import settings_from_bytes
from trioproxy.core._headers import Headers
from trioproxy.engine._exchange import Responder

from ..memnet import MemoryNetwork, ScriptedOrigin, memory_origin, memory_proxy
from ..support import parse_responses

RULES = b'[[rules]]\nmatch.path_prefix = "/private/"\ndeny = true\n'


@pytest.fixture
def heads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The statuses `Responder.queue_head` was asked to write, in order."""
    written: list[int] = []
    write = Responder.queue_head

    def spy(self: Responder, status: int, headers: Headers, **options: Any) -> None:
        written.append(status)
        write(self, status, headers, **options)

    monkeypatch.setattr(Responder, "queue_head", spy)
    yield written


async def test_every_kind_of_response_head_is_written_by_the_one_writer(
    autojump_clock: trio.testing.MockClock, heads: list[int]
) -> None:
    network, origin = MemoryNetwork(), ScriptedOrigin()
    settings = settings_from_bytes(RULES, file="t.toml")
    async with memory_origin(network, origin), memory_proxy(settings, network) as proxy:
        async with proxy.client() as client:
            assert (await client.request(b"GET", b"/small")).status == 200  # the origin's
            assert (await client.request(b"GET", b"/private/x")).status == 403  # a rule's
        async with proxy.client() as client:
            await client.stream.send_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: upgrade")
            await client.stream.send_all(b"\r\nUpgrade: websocket\r\n\r\n")
            assert (await client.stream.receive_some(65536)).startswith(b"HTTP/1.1 101 ")
        async with proxy.client() as client:  # a head that cannot be read
            await client.stream.send_all(b"GET / HTTP/1.1\r\nno colon\r\n\r\n")
            assert (await client.stream.receive_some(65536)).startswith(b"HTTP/1.1 400 ")
        await proxy.logged(4)
    async with memory_proxy(settings, network) as proxy:  # no origin now: an error answer
        async with proxy.client() as client:
            assert (await client.request(b"GET", b"/small")).status == 502
        await proxy.logged(1)
    assert heads == [200, 403, 101, 400, 502]


async def test_the_writer_closes_the_connection_on_its_last_allowed_request(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network, origin = MemoryNetwork(), ScriptedOrigin()
    settings = settings_from_bytes(b"[limits]\nkeepalive_requests = 2\n" + RULES, file="t.toml")
    async with memory_origin(network, origin), memory_proxy(settings, network) as proxy:
        async with proxy.client() as client:
            await client.stream.send_all(
                b"GET /small HTTP/1.1\r\nHost: x\r\n\r\nGET /private/ HTTP/1.1\r\nHost: x\r\n\r\n"
            )
            received = b""
            while data := await client.stream.receive_some(65536):
                received += data
        await proxy.logged(2)
    first, last = parse_responses(received)
    assert (first.status, last.status) == (200, 403)
    assert b"connection" not in {name.lower() for name, _ in first.headers}
    assert (b"Connection", b"close") in last.headers
    assert [(r.status, r.content_type) for r in proxy.records] == [
        (200, b""),
        (403, b"text/plain; charset=utf-8"),
    ]


# From the former test_head_errors.py: A HEAD request the proxy cannot forward gets its error
# status, head only.


async def test_a_head_request_whose_upstream_is_down_gets_a_502_head(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with memory_proxy() as proxy:  # no origin listens: connection refused
        async with proxy.client() as client:
            with trio.fail_after(100):
                head = await client.request(b"HEAD", b"/")
                get = await client.request(b"GET", b"/")  # the connection goes on
    assert (head.status, head.body) == (502, b"")
    assert head.header(b"content-length") == b"16"  # what the GET's answer has
    assert (get.status, get.body) == (502, b"502 Bad Gateway\n")
    assert [(r.method, r.status, r.body_bytes_sent) for r in proxy.records] == [
        (b"HEAD", 502, 0),
        (b"GET", 502, 16),
    ]
