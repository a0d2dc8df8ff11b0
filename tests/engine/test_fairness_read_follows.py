"""A write that a yielding read follows at once takes no fairness yield of its own (`Wire`'s
``read_follows``): the request head sent upstream (the response head's read follows), and the
response's last bytes sent to a client with nothing pipelined (its next request's read
follows). With the next request already in h11's buffer no read follows, and the write
yields as every write does.
"""

from __future__ import annotations

import h11
import pytest
import trio

from trioproxy.engine import _peer
from trioproxy.engine._memory import MemoryTransport, memory_transport_pair
from trioproxy.engine._peer import Downstream

from ..memnet import scripted_proxy
from .test_fairness_yields import counting_my_steps


def downstream() -> tuple[Downstream, MemoryTransport]:
    ours, theirs = memory_transport_pair()
    return Downstream(ours, h11.Connection(h11.SERVER)), theirs


async def test_a_write_a_read_follows_goes_on_while_another_task_is_runnable() -> None:
    down, theirs = downstream()
    async with trio.open_nursery() as nursery:
        await trio.lowlevel.checkpoint()
        nursery.start_soon(trio.lowlevel.checkpoint)  # runnable from now on
        with counting_my_steps() as counter:
            down._out.append(b"request")
            await down.send_queued(10.0, read_follows=True)
            assert counter.steps == 0  # the read that follows is the yield
            assert theirs.write_nowait(memoryview(b"answer")) == 6
            assert await down.recv_if_ready() == b"answer"
            assert counter.steps == 1
    assert down.bytes_sent == len(b"request")


@pytest.fixture
def fairness_asked(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Each time a completed write asks whether it may skip its yield (it never may here)."""
    asked: list[int] = []

    def never() -> bool:
        asked.append(1)
        return False

    monkeypatch.setattr(_peer, "may_skip_yield", never)
    return asked


async def test_a_forwarded_request_asks_for_no_yield_after_its_writes(
    fairness_asked: list[int],
) -> None:
    async with scripted_proxy() as (proxy, _), proxy.client() as client:
        assert (await client.request(b"GET", b"/small")).status == 200
        fairness_asked.clear()  # (the connection is warm now)
        assert (await client.request(b"GET", b"/small")).status == 200
        assert fairness_asked == []


async def test_with_the_next_request_pipelined_the_response_write_yields(
    fairness_asked: list[int],
) -> None:
    async with scripted_proxy() as (proxy, _):
        first = b"GET /small HTTP/1.1\r\nHost: x\r\n\r\n"
        last = b"GET /small HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        answers = await proxy.exchange_raw(first + last)
    assert answers.count(b"HTTP/1.1 200 ") == 2
    # The first response's write only: its successor was in h11's buffer, read by no one.
    # (After the last one the connection ends: no other step of this task follows.)
    assert fairness_asked == [1]
