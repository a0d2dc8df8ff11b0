"""The cancellation sweeps with faults acting: clients leaving at every moment, the server
cancelled at every step, a ``proxy.fault`` block cancelled mid-fault. Nothing is left behind:
no connection, no task, no busy upstream connection, no fault; one access record per
request; no internal error logged."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trioproxy.core._faults import Direction, Fault, FaultKind, Point, Selection
from trioproxy.testing import memory_world

from ..memnet import MemoryProxy
from .test_cancellation import run_with_clients_leaving, run_with_server_cancelled

# Faults at every seam, in both directions, chosen in turn so that each run mixes them.
FAULTS = (
    Fault(FaultKind.LATENCY, delay_s=0.3, selection=Selection(every=2), name="slow-head"),
    Fault(FaultKind.LATENCY, at=Point.BODY, delay_s=0.1, name="slow-body"),
    Fault(FaultKind.BANDWIDTH, Direction.ORIGIN, bytes_per_s=20_000, name="slow-upload"),
    Fault(FaultKind.HANG, at=Point.AFTER_HEAD, selection=Selection(every=5), name="hang"),
    Fault(
        FaultKind.RESET,
        at=Point.BODY,
        after_bytes=5000,
        selection=Selection(every=4),
        name="reset-body",
    ),
)


def with_faults(proxy: MemoryProxy) -> None:
    for fault in FAULTS:
        proxy.server.faults.add(fault)


async def test_clients_leaving_at_every_moment_of_faulted_exchanges_leave_nothing_behind(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    outcomes = set()
    for tenth in range(40):
        proxy = await run_with_clients_leaving(tenth / 10, with_faults, settle_s=3600)
        assert [f.name for f in proxy.server.faults] == [f.name for f in FAULTS]
        outcomes.add(tuple(sorted(r.status for r in proxy.records)))
    assert len(outcomes) > 3
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == []


async def test_the_server_cancelled_at_every_step_of_faulted_exchanges_leaves_nothing(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    outcomes = set()
    for at in range(1, 400, 9):
        if (proxy := await run_with_server_cancelled(at, prepare=with_faults)) is not None:
            outcomes.add(len(proxy.records))
    assert len(outcomes) > 3
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == []


@pytest.mark.parametrize(
    "keys",
    [
        {"kind": "latency", "delay_s": 60},
        {"kind": "hang"},
        {"kind": "bandwidth", "bytes_per_s": 100},
        {"kind": "hang", "direction": "origin", "at": "after_head"},
    ],
)
async def test_a_fault_block_cancelled_mid_fault_leaves_nothing_behind(
    autojump_clock: trio.testing.MockClock, keys: dict[str, object]
) -> None:
    for seconds in (0, 0.5, 5, 30):
        async with memory_world() as world:  # its leak check runs as the block ends
            with trio.move_on_after(seconds):
                async with world.fault(**keys), world.open() as stream:  # type: ignore[arg-type]
                    await stream.send_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
                    while await stream.receive_some(65536):
                        pass
            assert not list(world.proxy.server.faults)
