"""The admin listener's harness endpoints over real sockets: a fault added, listed and removed
as JSON (as a harness in any language would), and the journal read back; a body sent in
pieces, a chunked one and an oversized one; a prod proxy refuses to change its faults."""

from __future__ import annotations

import json
from typing import Any

import trio

from ..support import (
    Client,
    Reply,
    answering_every,
    exchange_raw,
    make_settings,
    raw_origin,
    running_proxy,
)

HARNESS = make_settings(admin__listen="127.0.0.1:0", admin__journal_size=10, admin__faults=True)


_ok_origin = answering_every(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


async def _admin(
    address: tuple[str, int] | None, method: bytes, target: bytes, body: Any = None
) -> Reply:
    assert address is not None
    data = b"" if body is None else json.dumps(body).encode()
    headers = [(b"Content-Type", b"application/json")] if body is not None else []
    with trio.fail_after(10):
        async with Client.connect(address) as client:
            return await client.request(method, target, headers, data)


async def test_a_fault_is_added_listed_and_removed_as_json() -> None:
    async with raw_origin(_ok_origin) as upstream, running_proxy(upstream, HARNESS) as proxy:
        admin = proxy.server.admin_address
        fault = {"name": "slow-api", "kind": "latency", "delay_s": 0.5, "every": 2}
        added = await _admin(admin, b"POST", b"/faults", {**fault, "match": {"path": "/api"}})
        assert (added.status, added.header(b"content-type")) == (201, b"application/json")
        assert added.json()["name"] == "slow-api"
        assert [f.name for f in proxy.server.faults] == ["slow-api"]
        listed = (await _admin(admin, b"GET", b"/faults")).json()["faults"]
        assert [(f["name"], f["delay_s"], f["every"], f["match"]) for f in listed] == [
            ("slow-api", 0.5, 2, {"path": "/api"})
        ]
        removed = await _admin(admin, b"DELETE", b"/faults/slow-api")
        assert removed.status == 200 and not proxy.server.faults
        gone = await _admin(admin, b"DELETE", b"/faults/slow-api")
        assert (gone.status, gone.json()["error"]) == (
            404,
            "no fault named 'slow-api'; active: none",
        )


async def test_a_bad_fault_reads_as_the_configuration_would_say_it() -> None:
    async with raw_origin(_ok_origin) as upstream, running_proxy(upstream, HARNESS) as proxy:
        reply = await _admin(
            proxy.server.admin_address, b"POST", b"/faults", {"kind": "reset", "at": "middle"}
        )
        assert reply.status == 400
        assert reply.json()["problems"] == [
            "fault.at: expected where the fault acts: one of before_head, after_head, body;"
            ' found string "middle"'
        ]


async def test_the_journal_lists_the_exchanges_through_the_proxy() -> None:
    async with raw_origin(_ok_origin) as upstream, running_proxy(upstream, HARNESS) as proxy:
        async with Client.connect(proxy.address) as client:
            await client.request(b"GET", b"/one")
            await client.request(b"GET", b"/two")
        journal = proxy.server.journal
        assert journal is not None
        with trio.fail_after(10):
            await journal.wait_for(count=2)
        reply = await _admin(proxy.server.admin_address, b"GET", b"/journal?path=/two")
        entries = reply.json()["entries"]
        assert [(e["seq"], e["method"], e["target"], e["status"]) for e in entries] == [
            (2, "GET", "/two", 200)
        ]


async def test_a_body_sent_in_two_writes_is_read_whole_and_bodies_are_bounded() -> None:
    async with raw_origin(_ok_origin) as upstream, running_proxy(upstream, HARNESS) as proxy:
        admin = proxy.server.admin_address
        assert admin is not None
        body = b'{"kind": "hang", "name": "h"}'
        head = b"POST /faults HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body)
        with trio.fail_after(10):
            stream = await trio.open_tcp_stream(*admin)
            async with stream:
                await stream.send_all(head + body[:5])
                await stream.send_all(body[5:])
                answer = b""
                while chunk := await stream.receive_some(65536):
                    answer += chunk
        assert answer.startswith(b"HTTP/1.1 201 ")
        chunked = b"POST /faults HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        assert (await exchange_raw(admin, chunked)).startswith(b"HTTP/1.1 411 ")
        huge = b"POST /faults HTTP/1.1\r\nHost: a\r\nContent-Length: 999999\r\n\r\n"
        assert (await exchange_raw(admin, huge)).startswith(b"HTTP/1.1 413 ")


async def test_a_proxy_without_admin_faults_lists_but_does_not_change_them() -> None:
    settings = make_settings(admin__listen="127.0.0.1:0")
    async with raw_origin(_ok_origin) as upstream, running_proxy(upstream, settings) as proxy:
        admin = proxy.server.admin_address
        refused = await _admin(admin, b"POST", b"/faults", {"kind": "hang"})
        assert refused.status == 403
        assert (await _admin(admin, b"GET", b"/faults")).json() == {"faults": []}
        assert (await _admin(admin, b"GET", b"/journal")).status == 404
