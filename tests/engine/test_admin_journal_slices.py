"""A journal read on the single-process admin listener, on the memory network: rendered in
slices, so other clients are served while a large journal is answered, and the bytes are those
the whole journal rendered at once gives; a clear's memory let go of in slices too.

Found in review: the answer was rendered in one step on the event loop (13 s of CPU for a full
journal of 100,000 exchanges), and every other client waited for it; freeing such a journal
on DELETE took a quarter of a second in one step.
"""

from __future__ import annotations

import json

import trio
import trio.testing

from trioproxy.core._journal import Entry
from trioproxy.engine._admin import AdminServer
from trioproxy.engine._journal import LiveJournal
from trioproxy.engine._memory import MemoryTransport, memory_transport_pair
from trioproxy.engine._metrics import RequestMetrics

from ..memnet import MemoryProxy, scripted_proxy
from ..support import parse_responses

ENTRIES = 4000  # 3.2 MB of JSON: ~200 slices (another request takes ~8 steps); 1 s of CPU


def _fill(journal: LiveJournal, count: int) -> None:
    headers = (("Host", "x"), ("User-Agent", "a browser of sorts"), ("Accept", "*/*"))
    for index in range(count):
        target = f"/page/{index}?q=\u00e9"
        journal.record(
            Entry(journal.next_seq(), "GET", target, headers, target, headers, status=200)
        )


def _admin(proxy: MemoryProxy) -> AdminServer:
    return AdminServer(
        is_draining=lambda: False,
        upstream=("x", 1),
        metrics_snapshot=RequestMetrics().snapshot,
        control=proxy.server.admin_control(),
    )


async def _ask(admin: AdminServer, request: bytes, first_byte: trio.Event | None = None) -> bytes:
    """``request`` on a new admin connection; the whole answer (``first_byte`` is set as its
    first byte arrives)."""
    ours, theirs = memory_transport_pair()
    assert theirs.write_nowait(memoryview(request)) == len(request)
    got = bytearray()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_serve, admin, ours)
        while (data := await _read(theirs)) != b"":
            if first_byte is not None:
                first_byte.set()
            got += data
    return bytes(got)


async def _serve(admin: AdminServer, transport: MemoryTransport) -> None:
    try:  # as the accept loop's handler does: close when done
        await admin._serve_one(transport)
    finally:
        transport.close()


async def _read(transport: MemoryTransport) -> bytes:
    while (data := transport.read_nowait(1 << 20)) is None:
        await transport.wait_readable()
    return data


async def test_other_clients_are_served_while_a_large_journal_is_rendered(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scripted_proxy(admin__journal_size=ENTRIES * 2) as (proxy, _origin):
        journal = proxy.server.journal
        assert journal is not None
        _fill(journal, ENTRIES)
        expected = json.dumps(journal.as_json(), indent=1).encode("ascii") + b"\n"
        served, answer = await _meanwhile(proxy, b"GET")
        # Rendered in one step, the answer came before the second of them was answered.
        assert served >= 10, f"{served} requests answered while the journal was rendered"
        (reply,) = parse_responses(answer)
        assert reply.status == 200 and reply.body == expected  # as rendered whole
        # The journal as it was when asked: the requests served meanwhile are not in it.
        assert len(json.loads(reply.body)["entries"]) == ENTRIES


async def test_other_clients_are_served_while_a_large_journal_is_let_go_of(
    autojump_clock: trio.testing.MockClock,
) -> None:
    count = 40_000  # ~160 slices freed
    async with scripted_proxy(admin__journal_size=count) as (proxy, _origin):
        assert proxy.server.journal is not None
        _fill(proxy.server.journal, count)
        served, answer = await _meanwhile(proxy, b"DELETE")
    # Let go of in one step, the entries were freed before the second of them was answered.
    assert served >= 5, f"{served} requests answered while the journal was freed"
    (reply,) = parse_responses(answer, method=b"DELETE")
    assert reply.status == 200 and json.loads(reply.body) == {"cleared": count}


async def _meanwhile(proxy: MemoryProxy, method: bytes) -> tuple[int, bytes]:
    """How many requests another client had answered, one after another, until the answer to
    ``method`` /journal began to arrive; and that answer."""
    answered, served = trio.Event(), []

    async def requests() -> None:
        served.append(await proxy.requests_until(answered))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(requests)
        request = b"%s /journal HTTP/1.1\r\nHost: x\r\n\r\n" % method
        answer = await _ask(_admin(proxy), request, answered)
    return served[0], answer


async def test_a_head_request_gets_the_length_of_the_journal_it_would_get(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scripted_proxy(admin__journal_size=100) as (proxy, _origin):
        assert proxy.server.journal is not None
        _fill(proxy.server.journal, 100)
        admin = _admin(proxy)
        target = b"/journal?path_prefix=/page/1"
        whole = await _ask(admin, b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % target)
        head = await _ask(admin, b"HEAD %s HTTP/1.1\r\nHost: x\r\n\r\n" % target)
    (reply,) = parse_responses(whole)
    assert len(json.loads(reply.body)["entries"]) == 11  # /page/1 and /page/10 to /page/19
    assert head == whole[: whole.index(b"\r\n\r\n") + 4]
    assert b"\r\nContent-Length: %d\r\n" % len(reply.body) in head
