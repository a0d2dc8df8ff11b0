"""The fairness yields after syscalls that did not wait (`Wire`, `_fairness`): a completed
write yields only if another task is runnable or the task already skipped one in this step;
a completed read always yields; a trio without the internals this reads is refused at import.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from contextlib import contextmanager

import h11
import pytest
import trio
import trio.testing
from trio._core import _run

from trioproxy.engine import _fairness
from trioproxy.engine._memory import MemoryTransport, memory_transport_pair
from trioproxy.engine._peer import Downstream


class StepCounter(trio.abc.Instrument):
    """How many times one task was resumed by the scheduler (each time after a yield)."""

    def __init__(self, task: trio.lowlevel.Task) -> None:
        self.task = task
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            self.steps += 1


@contextmanager
def counting_my_steps() -> Iterator[StepCounter]:
    counter = StepCounter(trio.lowlevel.current_task())
    trio.lowlevel.add_instrument(counter)
    try:
        yield counter
    finally:
        trio.lowlevel.remove_instrument(counter)


def downstream() -> tuple[Downstream, MemoryTransport]:
    ours, theirs = memory_transport_pair()
    return Downstream(ours, h11.Connection(h11.SERVER)), theirs


async def test_with_nothing_else_runnable_one_write_per_step_goes_on_without_yielding() -> None:
    down, _ = downstream()
    await trio.lowlevel.checkpoint()  # a fresh step
    with counting_my_steps() as counter:
        await down.send_all(b"first", 10.0)
        assert counter.steps == 0  # nobody else could have run: no scheduler pass
        await down.send_all(b"second", 10.0)
        assert counter.steps == 1  # a second one in the same step yields
        await down.send_all(b"third", 10.0)
        assert counter.steps == 1  # a new step: one may go on again
    assert down.bytes_sent == len(b"firstsecondthird")


async def test_a_completed_write_yields_while_another_task_is_runnable() -> None:
    down, _ = downstream()
    async with trio.open_nursery() as nursery:
        await trio.lowlevel.checkpoint()
        nursery.start_soon(trio.lowlevel.checkpoint)  # runnable from now on
        with counting_my_steps() as counter:
            await down.send_all(b"data", 10.0)
            assert counter.steps == 1


async def test_a_completed_read_always_yields() -> None:
    down, theirs = downstream()
    assert theirs.write_nowait(memoryview(b"request bytes")) == 13
    await trio.lowlevel.checkpoint()
    with counting_my_steps() as counter:
        assert await down.recv_if_ready() == b"request bytes"
        assert counter.steps == 1  # a step never reads more than one buffer


def test_a_trio_without_the_scheduler_internals_is_refused_with_a_clear_message() -> None:
    _fairness.check_internals(_run)  # this trio has them
    older = types.SimpleNamespace(GLOBAL_RUN_CONTEXT=None, Runner=_run.Runner, Task=object)
    with pytest.raises(ImportError, match=r"Task\._schedule_points.*trio 0\.27 to 0\.35"):
        _fairness.check_internals(older)  # type: ignore[arg-type]
