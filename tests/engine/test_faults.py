"""Faults carried out by the engine, every kind at its seam, in both directions, on the
memory network under the autojump clock (so a 120 s hang takes no time).

The origin here is a byte-level one (`Origin`): it answers ``/bytes/N`` with N body bytes in
writes of 1000, and notes what it received and how each connection ended, so a test sees a
fault from the side that suffers it. Faults come through ``world.fault`` (the runtime table,
as ``POST /faults``) and, in the rule tests, through trioproxy.toml's ``fault`` key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import h11
import pytest
import trio
import trio.testing

from trioproxy.config._config import settings_from_bytes
from trioproxy.testing import ExchangeMatch, MemoryStream, memory_world

from ..support import Client

GET = b"GET %s HTTP/1.1\r\nHost: test.example\r\n\r\n"


@dataclass
class Origin:
    requests: list[bytes] = field(default_factory=list)  # targets, as they arrived
    bodies: list[bytes] = field(default_factory=list)  # request bodies, as far as they came
    endings: list[str] = field(default_factory=list)  # "eof" or "reset", per cut connection
    arrived_at: list[float] = field(default_factory=list)

    async def __call__(self, stream: MemoryStream) -> None:
        conn = h11.Connection(h11.SERVER)
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                try:
                    data = await stream.receive_some(65536)
                except trio.BrokenResourceError:
                    self._cut("reset", body, conn)
                    return
                if not data and conn.their_state is not h11.IDLE:
                    self._cut("eof", body, conn)
                    return
                conn.receive_data(data)
            elif isinstance(event, h11.Request):
                self.requests.append(event.target)
                self.arrived_at.append(trio.current_time())
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                self.bodies.append(bytes(body))
                body.clear()
                await self._answer(stream, conn, self.requests[-1])
                conn.start_next_cycle()
            else:  # ConnectionClosed between requests
                return

    def _cut(self, how: str, body: bytearray, conn: h11.Connection) -> None:
        self.endings.append(how)
        if conn.their_state is not h11.IDLE:
            self.bodies.append(bytes(body))

    async def _answer(self, stream: MemoryStream, conn: h11.Connection, target: bytes) -> None:
        size = int(target.rpartition(b"/")[2]) if target.startswith(b"/bytes/") else 2
        head = [(b"Content-Length", b"%d" % size)]
        await stream.send_all(conn.send(h11.Response(status_code=200, headers=head)))
        for start in range(0, size, 1000):
            await stream.send_all(conn.send(h11.Data(data=b"x" * min(1000, size - start))))
        await stream.send_all(conn.send(h11.EndOfMessage()))


async def _raw(stream: MemoryStream, data: bytes) -> tuple[bytes, str]:
    """Send ``data``; everything received until the connection ended, and how it ended."""
    await stream.send_all(data)
    received = bytearray()
    while True:
        try:
            chunk = await stream.receive_some(65536)
        except trio.BrokenResourceError:
            return bytes(received), "reset"
        if not chunk:
            return bytes(received), "eof"
        received += chunk


def _body_of(raw: bytes) -> bytes:
    return raw.partition(b"\r\n\r\n")[2]


# --- Towards the client ----------------------------------------------------------------------


async def test_latency_before_the_head_delays_the_answer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with memory_world(origin=Origin()) as world, world.fault(kind="latency", delay_s=5):
        async with world.open() as stream:
            started = trio.current_time()
            reply = await Client(stream).request(b"GET", b"/")
            assert (reply.status, trio.current_time() - started) == (200, 5.0)
        (entry,) = world.journal.verify(ExchangeMatch(fault="latency@client:before_head"))
        assert entry.end_s - entry.start_s == 5.0


async def test_latency_between_body_chunks_delays_each_write(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with memory_world(origin=Origin()) as world:
        async with world.fault(kind="latency", at="body", delay_s=2), world.open() as stream:
            started = trio.current_time()
            reply = await Client(stream).request(b"GET", b"/bytes/200000")
            assert len(reply.body) == 200_000
            # More than one write (the body is over the 64 KiB pipe), each after 2 s.
            assert trio.current_time() - started >= 4.0


async def test_bandwidth_dribbles_the_body_at_its_rate(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with memory_world(origin=Origin()) as world:
        async with world.fault(kind="bandwidth", bytes_per_s=1000), world.open() as stream:
            started = trio.current_time()
            reply = await Client(stream).request(b"GET", b"/bytes/10000")
            assert len(reply.body) == 10_000
            # 1000 B/s after a first 50 ms worth (the pacing's bucket)
            assert trio.current_time() - started == pytest.approx(9.95, abs=0.01)


async def test_a_hang_answers_nothing_until_the_client_gives_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    origin = Origin()
    async with memory_world(origin=origin) as world, world.fault(kind="hang"):
        async with world.open() as stream:
            await stream.send_all(GET % b"/")
            with trio.move_on_after(120) as waited:
                await stream.receive_some(65536)
            assert waited.cancelled_caught  # 120 s of silence, in no wall time
        (entry,) = await world.journal.wait_for(ExchangeMatch(fault="hang@client:before_head"))
        assert entry.status == 444 and origin.requests == [b"/"]


MALFORMED = b"HTTP/1.1 200 OK\r\nContent-Length: nonsense\r\n\r\n"


@pytest.mark.parametrize(
    ("keys", "head", "rest", "ending"),
    [
        ({"kind": "reset"}, False, b"", "reset"),
        ({"kind": "reset", "at": "after_head"}, True, b"", "reset"),
        ({"kind": "reset", "at": "body", "after_bytes": 2500}, True, b"x" * 2500, "reset"),
        ({"kind": "truncate", "after_bytes": 2500}, True, b"x" * 2500, "eof"),
        ({"kind": "malformed"}, False, MALFORMED, "eof"),
        ({"kind": "malformed", "at": "after_head", "garbage": "zz"}, True, b"zz", "eof"),
    ],
)
async def test_the_client_sees_its_connection_cut_where_the_fault_says(
    autojump_clock: trio.testing.MockClock,
    keys: dict[str, Any],
    head: bool,
    rest: bytes,
    ending: str,
) -> None:
    async with memory_world(origin=Origin()) as world, world.fault(**keys):
        async with world.open() as stream:
            started = trio.current_time()
            received, how = await _raw(stream, GET % b"/bytes/5000")
            assert trio.current_time() == started  # at once, not at some deadline
    if head:  # the origin's head, then what the fault let through
        assert received.startswith(b"HTTP/1.1 200 ") and _body_of(received) == rest
    else:
        assert received == rest
    assert how == ending


async def test_an_answer_comes_from_the_proxy_and_the_origin_is_never_asked(
    autojump_clock: trio.testing.MockClock,
) -> None:
    origin = Origin()
    async with memory_world(origin=origin) as world:
        fault: dict[str, Any] = {
            "kind": "answer",
            "status": 503,
            "retry_after_s": 7,
            "body": "try later\n",
        }
        async with world.fault(**fault), world.open() as stream:
            reply = await Client(stream).request(b"GET", b"/")
    assert (reply.status, reply.header(b"retry-after"), reply.body) == (503, b"7", b"try later\n")
    assert reply.header(b"x-request-id") and origin.requests == []


async def test_an_informational_response_comes_before_the_answer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with memory_world(origin=Origin()) as world:
        async with world.fault(kind="informational", status=103), world.open() as stream:
            reply = await Client(stream).request(b"GET", b"/")
    assert [i.status_code for i in reply.informational] == [103] and reply.status == 200


async def test_close_after_ends_a_keep_alive_connection_that_did_not_say_so(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with memory_world(origin=Origin()) as world:
        async with world.fault(kind="close_after"), world.open() as stream:
            received, ending = await _raw(stream, GET % b"/")
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and body == b"xx" and ending == "eof"
    assert b"connection:" not in head.lower()


# --- Which requests ----------------------------------------------------------------------------


async def test_first_every_and_probability_choose_the_requests(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def statuses(**selection: Any) -> list[int]:
        async with memory_world(origin=Origin()) as world:
            async with world.fault(kind="answer", status=503, **selection):
                async with world.open() as stream:
                    client = Client(stream)
                    return [(await client.request(b"GET", b"/")).status for _ in range(8)]

    fail, ok = 503, 200
    assert await statuses(first=2) == [fail, fail, ok, ok, ok, ok, ok, ok]
    assert await statuses(every=3) == [ok, ok, fail, ok, ok, fail, ok, ok]
    seeded = await statuses(probability=0.5, seed=4)
    assert await statuses(probability=0.5, seed=4) == seeded and {fail, ok} == set(seeded)


async def test_a_fault_matches_requests_as_a_rule_does(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with memory_world(origin=Origin()) as world:
        selected = {"path_prefix": "/api/", "methods": ["POST"]}
        async with world.fault(kind="answer", status=500, match=selected) as fault:
            for method, path, status in [
                (b"POST", b"/api/x", 500),
                (b"GET", b"/api/x", 200),
                (b"POST", b"/else", 200),
            ]:
                async with world.open() as stream:
                    body = b"a" if method == b"POST" else b""
                    assert (await Client(stream).request(method, path, body=body)).status == status
        assert (fault.state.seen, fault.state.applied) == (1, 1)


async def test_a_faults_key_in_the_configuration_acts_as_the_runtime_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    toml = b"""
[[rules]]
name = "flaky"
match.path_prefix = "/flaky/"
fault = { kind = "reset", at = "after_head", first = 1 }
"""
    settings = settings_from_bytes(toml, file="trioproxy.toml")
    async with memory_world(origin=Origin(), settings=settings) as world:
        assert world.proxy.server.ctx.hooks is None  # a fault is an action that loads no code
        async with world.open() as stream:
            received, ending = await _raw(stream, GET % b"/flaky/1")
        assert received.startswith(b"HTTP/1.1 200 ") and ending == "reset"
        async with world.open() as stream:
            assert (await Client(stream).request(b"GET", b"/flaky/1")).status == 200
        world.journal.verify(ExchangeMatch(fault="reset@client:after_head"), times=1)
        world.journal.verify(ExchangeMatch(rule="flaky"), times=1)  # not chosen: not applied


# --- Towards the origin -----------------------------------------------------------------------


async def test_latency_towards_the_origin_delays_the_request(
    autojump_clock: trio.testing.MockClock,
) -> None:
    origin = Origin()
    async with memory_world(origin=origin) as world:
        async with world.fault(kind="latency", direction="origin", delay_s=3), world.open() as s:
            started = trio.current_time()
            assert (await Client(s).request(b"GET", b"/")).status == 200
    assert origin.arrived_at == [started + 3.0]


@pytest.mark.parametrize(
    ("keys", "requests", "endings", "bodies"),
    [
        ({"kind": "reset"}, [], ["reset"], []),
        ({"kind": "reset", "at": "after_head"}, [b"/up"], ["reset"], [b""]),
        ({"kind": "reset", "at": "body", "after_bytes": 3000}, [b"/up"], ["reset"], [b"y" * 3000]),
        ({"kind": "truncate", "after_bytes": 3000}, [b"/up"], ["eof"], [b"y" * 3000]),
    ],
)
async def test_the_origin_sees_its_connection_cut_and_the_client_gets_a_502(
    autojump_clock: trio.testing.MockClock,
    keys: dict[str, Any],
    requests: list[bytes],
    endings: list[str],
    bodies: list[bytes],
) -> None:
    origin = Origin()
    async with memory_world(origin=origin) as world:
        async with world.fault(direction="origin", **keys), world.open() as stream:
            started = trio.current_time()
            reply = await Client(stream).request(b"POST", b"/up", body=b"y" * 10_000)
            assert trio.current_time() == started  # at once, not at some deadline
    assert reply.status == 502
    assert (origin.requests, origin.endings, origin.bodies) == (requests, endings, bodies)


async def test_bandwidth_towards_the_origin_paces_the_request_body(
    autojump_clock: trio.testing.MockClock,
) -> None:
    origin = Origin()
    async with memory_world(origin=origin) as world:
        fault: dict[str, Any] = {"kind": "bandwidth", "direction": "origin", "bytes_per_s": 500}
        async with world.fault(**fault), world.open() as stream:
            started = trio.current_time()
            reply = await Client(stream).request(b"POST", b"/up", body=b"y" * 5000)
            assert reply.status == 200 and origin.bodies == [b"y" * 5000]
            assert trio.current_time() - started == pytest.approx(9.95, abs=0.01)


async def test_a_hang_towards_the_origin_never_sends_the_request(
    autojump_clock: trio.testing.MockClock,
) -> None:
    origin = Origin()
    async with memory_world(origin=origin) as world:
        async with world.fault(kind="hang", direction="origin"), world.open() as stream:
            await stream.send_all(GET % b"/")
            with trio.move_on_after(300) as waited:
                await stream.receive_some(65536)
            assert waited.cancelled_caught
        await world.journal.wait_for(ExchangeMatch(status=444))
    assert origin.requests == []
