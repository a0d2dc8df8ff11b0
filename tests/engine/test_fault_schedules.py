"""Property tests of a client under schedules of faults (`trioproxy.testing.strategies`), and
the pytest fixture of the memory world: what a user of the kit writes."""

from __future__ import annotations

import httpx
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trioproxy.core._faults import Direction, Fault, FaultKind
from trioproxy.testing import MemoryWorld, memory_world, run
from trioproxy.testing._asgi import Receive, Scope, Send
from trioproxy.testing.strategies import fault_schedules, faults

BODY = b"x" * 5000


async def api(scope: Scope, receive: Receive, send: Send) -> None:
    headers = [(b"content-length", b"%d" % len(BODY))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": BODY})


async def fetch(client: httpx.AsyncClient, attempts: int = 4) -> bytes:
    """A client under test: retries 5xx and transport errors with backoff, 30 s timeout."""
    for attempt in range(attempts):
        try:
            response = await client.get("/data", timeout=30.0)
            if response.status_code == 200:
                return response.content
        except httpx.TransportError:
            pass
        await trio.sleep(2**attempt)
    raise RuntimeError("no answer")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fault_schedules(max_faults=3))
def test_under_any_schedule_of_three_faults_the_client_is_right_or_fails_cleanly(
    schedule: list[Fault],
) -> None:
    async def scenario() -> None:
        async with memory_world(api) as world, world.faults(schedule):
            async with world.httpx_client() as client:
                try:
                    body = await fetch(client)
                except (RuntimeError, httpx.HTTPError):
                    return  # a clean error
                assert body == BODY  # never a cut or garbled body taken for the answer

    run(scenario)


@given(st.data())
def test_every_drawn_fault_is_valid_and_schedules_are_named_in_order(data: st.DataObject) -> None:
    fault = data.draw(faults(directions=[Direction.ORIGIN]))
    assert fault.problems() == []
    assert (
        fault.kind
        in (FaultKind.ANSWER, FaultKind.CLOSE_AFTER, FaultKind.INFORMATIONAL, FaultKind.MALFORMED)
        or fault.direction is Direction.ORIGIN
    )
    schedule = data.draw(fault_schedules(max_faults=3))
    assert [f.name for f in schedule] == [f"f{i + 1}" for i in range(len(schedule))]


def test_a_failing_property_shrinks_to_the_smallest_schedule() -> None:
    found: list[list[Fault]] = []

    @settings(max_examples=200, deadline=None, database=None)
    @given(fault_schedules(max_faults=3))
    def client_survives_anything(schedule: list[Fault]) -> None:
        found.append(schedule)
        assert not any(f.kind is FaultKind.RESET for f in schedule)

    with pytest.raises(AssertionError):
        client_survives_anything()
    smallest = found[-1]
    assert len(smallest) == 1 and smallest[0].kind is FaultKind.RESET


@pytest.fixture
def trioproxy_world_app() -> object:
    return api


async def test_the_pytest_fixture_is_a_memory_world_on_virtual_time(
    trioproxy_world: MemoryWorld, autojump_clock: trio.testing.MockClock
) -> None:
    async with trioproxy_world.fault(kind="latency", delay_s=100, first=1):
        async with trioproxy_world.httpx_client() as client:
            started = trio.current_time()
            assert await fetch(client) == BODY
            assert trio.current_time() - started == 31.0  # one 30 s timeout, 1 s of backoff
