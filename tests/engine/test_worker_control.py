"""A worker's side of the relayed harness endpoints (`_workers`): a journal read is rendered
in a thread from a copy (the same answer as on the loop), an answer too large for the channel
is refused with what to do, every answer carries the worker's clock offset, and a cleared
journal's memory is let go of in slices with checkpoints between."""

from __future__ import annotations

import json
import time
from functools import partial

import pytest
import trio

from trioproxy.app import _workers
from trioproxy.app._workers import _controlled, answer_off_loop
from trioproxy.core._admincontrol import AdminControl
from trioproxy.core._faulttable import FaultTable
from trioproxy.core._journal import FREE_SLICE, Entry, Journal
from trioproxy.testing import memory_world

from ..support import Client


async def _three_exchanges() -> tuple[bytes, tuple[int, bytes, bytes], float]:
    async with memory_world(autojump=False, seed=None) as world:
        for index in range(3):
            async with world.open() as stream:
                await Client(stream).request(b"GET", b"/x/%d" % index)
        control = world.proxy.server.admin_control()
        on_loop = control.answer(b"GET", b"/journal?path_prefix=/x/", b"")[2]
        message = await _controlled(partial_off_loop(control), b"GET", b"/journal", b"")
        offset_s = time.monotonic() - trio.current_time()
    return on_loop, message[1:4], message[4] - offset_s


def partial_off_loop(control: AdminControl) -> _workers.Control:
    return partial(answer_off_loop, control)


async def test_a_journal_read_off_the_loop_answers_as_on_it() -> None:
    on_loop, (status, content_type, body), drift_s = await _three_exchanges()
    assert (status, content_type) == (200, b"application/json")
    assert body == on_loop
    assert [e["target"] for e in json.loads(body)["entries"]] == ["/x/0", "/x/1", "/x/2"]
    assert abs(drift_s) < 1.0  # the offset turns the loop's clock into time.monotonic()


async def test_an_answer_too_large_for_the_channel_is_refused_with_what_to_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_workers, "_MAX_CONTROL_BYTES", 10)
    async with memory_world(autojump=False, seed=None) as world:
        control = world.proxy.server.admin_control()
        message = await _controlled(partial_off_loop(control), b"GET", b"/journal", b"")
    assert message[1] == 507 and b"lower admin.journal_size" in message[3]


async def test_a_worker_frees_a_cleared_journal_in_slices_between_checkpoints() -> None:
    journal = Journal(FREE_SLICE * 8)
    for seq in range(FREE_SLICE * 8):
        journal.record(Entry(seq, "GET", "/x"))
    control = AdminControl(journal, FaultTable(), lambda raw, problem: None)
    steps = 0

    async def other_client() -> None:  # scheduled at every checkpoint of the clear
        nonlocal steps
        while True:
            steps += 1
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other_client)
        await trio.lowlevel.checkpoint()
        answer = await answer_off_loop(control, b"DELETE", b"/journal", b"")
        nursery.cancel_scope.cancel()
    assert answer == (200, b"application/json", b'{\n "cleared": %d\n}\n' % (FREE_SLICE * 8))
    assert len(journal) == 0
    assert steps >= 8  # the old code freed all in one step: the other task ran once
