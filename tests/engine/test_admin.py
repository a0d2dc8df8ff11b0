"""The admin listener on the memory transport: its answer has one deadline in all.

Found in review: with a deadline per wait only, a reader taking a few bytes just inside
each timeout held one of the few admin slots for as long as the answer lasted.
"""

from __future__ import annotations

import trio
import trio.testing

from trioproxy.core._adminanswers import IO_TIMEOUT_S
from trioproxy.engine._admin import AdminServer
from trioproxy.engine._memory import memory_transport_pair
from trioproxy.engine._metrics import RequestMetrics


async def test_a_reader_trickling_the_answer_is_cut_off_at_the_io_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = AdminServer(
        is_draining=lambda: False, upstream=("x", 1), metrics_snapshot=RequestMetrics().snapshot
    )
    ours, theirs = memory_transport_pair(capacity=8)  # a tiny window: the answer trickles
    request = memoryview(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    got = bytearray()
    served_for: list[float] = []

    async def serve() -> None:  # as the accept loop's handler does: close when done
        try:
            await server._serve_one(ours)
        finally:
            ours.close()
            served_for.append(trio.current_time() - start)

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        while request:
            request = request[theirs.write_nowait(request) or 0 :]
            await trio.sleep(0.1)
        while (data := theirs.read_nowait(8)) != b"":
            got += data or b""
            await trio.sleep(IO_TIMEOUT_S * 0.9)  # a byte or eight just inside each timeout
    assert b"200 OK" in got  # it was answering, slowly
    assert served_for[0] <= IO_TIMEOUT_S + 1  # the read's deadline, then the answer's
