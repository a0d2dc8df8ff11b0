"""The fairness yield after a read that did not wait (`Wire.recv_if_ready`, `_fairness`): the
step's first goes on at once, whatever else is runnable; the step's next write yields, and its
next read yields before reading, so a step reads one buffer and does one write at most.
"""

from __future__ import annotations

import trio
import trio.testing

from tests.engine.test_fairness_yields import counting_my_steps, downstream


async def test_the_first_read_of_a_step_goes_on_and_the_next_write_yields() -> None:
    down, theirs = downstream()
    assert theirs.write_nowait(memoryview(b"request bytes")) == 13
    async with trio.open_nursery() as nursery:
        await trio.lowlevel.checkpoint()
        nursery.start_soon(trio.lowlevel.checkpoint)  # runnable from now on
        with counting_my_steps() as counter:
            assert await down.recv_if_ready() == b"request bytes"
            assert counter.steps == 0  # no scheduler pass for the read alone
            await down.send_all(b"answer", 10.0)
            assert counter.steps == 1  # the write after it yields (one read, one write a step)
    assert down.bytes_received == 13


async def test_a_second_read_in_the_step_yields_before_it_reads() -> None:
    down, theirs = downstream()
    assert theirs.write_nowait(memoryview(b"first")) == 5
    await trio.lowlevel.checkpoint()
    with counting_my_steps() as counter:
        assert await down.recv_if_ready() == b"first"
        assert counter.steps == 0
        assert theirs.write_nowait(memoryview(b"second")) == 6
        assert await down.recv(10.0) == b"second"
        assert counter.steps == 2  # a yield before the read (a new step), and one after it


async def test_a_read_after_a_skipped_write_yields() -> None:
    down, theirs = downstream()
    await trio.lowlevel.checkpoint()
    with counting_my_steps() as counter:
        await down.send_all(b"request", 10.0)  # nothing else runnable: goes on
        assert counter.steps == 0
        assert theirs.write_nowait(memoryview(b"response")) == 8
        assert await down.recv_if_ready() == b"response"
        assert counter.steps == 1  # the step's one skip was taken: the read yields


async def test_a_read_that_finds_nothing_yields_nothing_and_keeps_the_skip() -> None:
    down, theirs = downstream()
    await trio.lowlevel.checkpoint()
    with counting_my_steps() as counter:
        assert await down.recv_if_ready() is None
        assert theirs.write_nowait(memoryview(b"late")) == 4
        assert await down.recv_if_ready() == b"late"
        assert counter.steps == 0
