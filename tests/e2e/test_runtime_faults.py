"""``async with proxy.fault(...)``: a fault for the length of a block, checked as the
configuration's, gone when the block ends however it ends."""

from __future__ import annotations

import pytest
import trio

from trioproxy import running
from trioproxy.core._faults import Direction, Fault, FaultKind, Point

UPSTREAM = ("127.0.0.1", 9)  # never reached: no request is sent


async def test_a_fault_lasts_for_its_block() -> None:
    async with running(UPSTREAM) as proxy:
        async with proxy.fault(kind="reset", at="after_head", first=2, match={"path": "/a"}) as f:
            assert [x.name for x in proxy.server.faults] == [f.name] == ["reset@client:after_head"]
            assert f.state.fault.selection.first == 2 and f.match_json == {"path": "/a"}
            async with proxy.fault(Fault(FaultKind.HANG, Direction.ORIGIN, name="stall")):
                assert [x.name for x in proxy.server.faults] == [f.name, "stall"]
            assert [x.name for x in proxy.server.faults] == [f.name]
        assert not proxy.server.faults


async def test_a_fault_goes_when_its_block_fails_or_is_cancelled() -> None:
    async with running(UPSTREAM) as proxy:
        with pytest.raises(KeyError):
            async with proxy.fault(kind="hang"):
                raise KeyError("the test's own failure")
        with trio.move_on_after(0):
            async with proxy.fault(kind="hang"):
                await trio.sleep_forever()
        assert not proxy.server.faults


@pytest.mark.parametrize(
    ("fault", "keys", "message"),
    [
        (None, {"kind": "latency"}, "fault.delay_s: a latency fault needs delay_s"),
        (None, {"kind": "hang", "match": {"pth": "/"}}, "fault.match.pth: unknown key"),
        (Fault(FaultKind.TRUNCATE, at=Point.BEFORE_HEAD), {}, "fault.at: a truncate fault acts"),
    ],
)
async def test_a_bad_fault_raises_naming_its_key(
    fault: Fault | None, keys: dict[str, object], message: str
) -> None:
    async with running(UPSTREAM) as proxy:
        with pytest.raises(ValueError, match=message):
            async with proxy.fault(fault, **keys):  # type: ignore[arg-type]
                pass
        assert not proxy.server.faults


async def test_two_faults_of_one_name_at_once_are_refused() -> None:
    async with running(UPSTREAM) as proxy, proxy.fault(kind="hang", name="x"):
        with pytest.raises(KeyError, match="a fault named 'x' is active already"):
            async with proxy.fault(kind="reset", name="x"):
                pass
        assert [x.name for x in proxy.server.faults] == ["x"]
