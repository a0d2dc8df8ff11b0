"""The whole proxy in simulation: many clients and an origin behaving at random, invariants
checked after every run (`simulation`), and the same scenario giving the same run.

Each example is one scenario run in its own ``trio.run`` on the mock clock: a few
milliseconds of wall time for up to a minute of virtual time.

A scenario always runs the same way; which scenarios the derandomized ci profile draws
depends on the modules loaded, though (Hypothesis mines their source for constants), so
this file alone and the whole suite try different ones. A failure prints its scenario:
paste it into `simulate` to replay it.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

from .conftest import PROFILE
from .simulation import simulate
from .simworld import CLIENT_ENDINGS, ORIGIN_BEHAVIOURS, ClientSpec, RequestSpec, Scenario

# Sizes either side of the proxy's 1024-byte buffers (see `sim_settings`) and of the memory
# network's 4096-byte pipes: bodies buffered whole, and bodies streamed under backpressure.
sizes = st.sampled_from([0, 10, 700, 1500, 5000, 20000])


@st.composite
def request_specs(draw: st.DrawFn, *, last: bool) -> RequestSpec:
    body = draw(st.sampled_from(["none", "none", "head", "length", "chunked"]))
    upgrade = last and body == "none" and draw(st.booleans())
    origin = draw(st.sampled_from(ORIGIN_BEHAVIOURS))
    return RequestSpec(
        body=body,
        body_size=draw(sizes) if body in ("length", "chunked") else 0,
        upgrade=upgrade,
        origin=origin,
        response_size=draw(sizes),
        expect=body in ("length", "chunked") and draw(st.booleans()),
    )


times = st.integers(0, 80).map(lambda tenths: tenths / 10)


@st.composite
def client_specs(draw: st.DrawFn) -> ClientSpec:
    count = draw(st.integers(1, 3))
    requests = tuple(draw(request_specs(last=j == count - 1)) for j in range(count))
    slow = draw(st.booleans())
    return ClientSpec(
        start_s=draw(times),
        requests=requests,
        pipelined=draw(st.booleans()),
        piece_bytes=draw(st.sampled_from([1, 7, 100, 3000])) if slow else 0,
        pause_s=draw(st.sampled_from([0.01, 0.3, 2.0])),
        ending=draw(st.sampled_from(CLIENT_ENDINGS[:2] * 3 + CLIENT_ENDINGS)),
        cut_fraction=draw(st.floats(0.0, 1.0)),
        give_up_s=draw(st.none() | times),
    )


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    return Scenario(
        seed=draw(st.integers(0, 2**32 - 1)),
        clients=tuple(draw(st.lists(client_specs(), min_size=1, max_size=8))),
        stop=draw(st.sampled_from(["after", "after", "drain", "cancel"])),
        stop_s=draw(times),
        stop_step=draw(st.sampled_from([0, 0]) | st.integers(1, 400)),
        drain_s=draw(st.sampled_from([0.0, 0.5, 5.0])),
        max_connections=draw(st.sampled_from([2, 100])),
        upstream_max_connections=draw(st.sampled_from([0, 0, 1, 3])),
        pool_size=draw(st.sampled_from([1, 4])),
        keepalive_requests=draw(st.sampled_from([2, 1000])),
        hooks=draw(st.sampled_from(["none", "none", "hooks"])),
    )


def _request(
    origin: str = "ok",
    body: str = "none",
    size: int = 0,
    *,
    upgrade: bool = False,
    response: int = 50,
) -> RequestSpec:
    return RequestSpec(body, size, upgrade, origin, response)


def _client(
    start_s: float,
    *requests: RequestSpec,
    pipelined: bool = True,
    piece_bytes: int = 0,
    ending: str = "read",
    give_up_s: float | None = None,
) -> ClientSpec:
    return ClientSpec(
        start_s=start_s,
        requests=requests,
        pipelined=pipelined,
        piece_bytes=piece_bytes,
        pause_s=0.2,
        ending=ending,
        cut_fraction=0.5,
        give_up_s=give_up_s,
    )


# One client per behaviour, side by side on one proxy.
EVERYTHING = Scenario(
    seed=1,
    clients=(
        _client(0.0, _request(), _request(body="length", size=3000), _request("interim")),
        _client(
            0.5,
            _request(response=5000),
            _request("slow", response=3000),
            _request("upgrade", upgrade=True),
            pipelined=False,
        ),
        _client(0.1, _request("early", "chunked", 2500), piece_bytes=100, ending="half_close"),
        _client(0.2, _request("silent"), _request()),
        _client(0.3, _request("cut", response=4000)),
        _client(0.3, _request("reset")),
        _client(0.3, ending="silent"),
        _client(0.3, _request(), ending="garbage"),
        _client(0.3, _request(body="length", size=5000), _request(), ending="reset"),
        _client(0.3, _request("silent"), give_up_s=1.0),
        # Its first two answers come with another behind them on the same connection (after
        # the HEAD's, the body a HEAD must not have first): the proxy must not keep that
        # connection for the next request (the client's own next, or another client's).
        _client(0.4, _request("overrun"), _request("overrun", "head"), _request(), pipelined=False),
    ),
    stop="after",
    stop_s=0.0,
    stop_step=0,
    drain_s=2.0,
    max_connections=100,
    upstream_max_connections=0,
    pool_size=4,
    keepalive_requests=1000,
)


def test_one_client_of_each_kind_gets_what_it_should() -> None:
    outcome = simulate(EVERYTHING)
    assert outcome.violations == []
    got = [[reply.status for reply in client.replies.done] for client in outcome.clients]
    assert got == [
        [200, 200, 200],
        [200, 200, 101],
        [200],
        [504, 200],
        [],
        [502],
        [],
        [400],
        [],
        [],
        [200, 200, 200],
    ]
    assert outcome.clients[1].replies.tunnel == b"[t001.99 tunnelled]"
    # The HEAD's answer: the GET's head, no body (the one the origin sent is dropped).
    head = outcome.clients[10].replies.done[1]
    assert (head.header(b"content-length"), head.body) == (b"50", b"")
    first = outcome.clients[0].replies.done[0]
    assert (first.header(b"x-token"), first.header(b"x-request-id")) == (b"t000.0", b"t000.0")
    statuses = sorted(record.status for record in outcome.records)
    # Two 499s: the client that gives up on a silent origin, and the one that resets while
    # its upload is read (what arrived before a reset is read first, as on Linux).
    assert statuses == sorted([200] * 11 + [101, 504, 502, 400, 499, 499]), statuses


def test_a_client_resetting_while_the_proxy_lingers_is_no_internal_error() -> None:
    # Found by the simulation: the origin answers a large upload early, the proxy lingers to
    # drain the rest of the body, the client resets meanwhile; Peer.linger let ClientGone out.
    upload = _request("early", "length", 20000, response=10)
    reset_mid_upload = _client(0.0, upload, piece_bytes=3000, ending="reset")
    scenario = dataclasses.replace(EVERYTHING, clients=(reset_mid_upload,))
    outcome = simulate(scenario)
    assert outcome.violations == []
    assert [record.status for record in outcome.records] == [200]


# The ci profile's examples take a few seconds here; the deep profile's take its own count.
EXAMPLES = 150 if PROFILE == "ci" else settings().max_examples


# Green, the test takes seconds; red, shrinking a scenario can take minutes: let it finish.
@pytest.mark.timeout(900)
@settings(max_examples=EXAMPLES)
@given(scenarios())
def test_every_invariant_holds_whatever_the_clients_and_the_origin_do(scenario: Scenario) -> None:
    outcome = simulate(scenario)
    note(f"{len(outcome.records)} records, {outcome.quiescent_checks} quiescent checks")
    assert outcome.violations == []


@settings(max_examples=10 if PROFILE == "ci" else 200)
@given(scenarios())
def test_the_same_scenario_runs_the_same_way_twice(scenario: Scenario) -> None:
    first, second = simulate(scenario), simulate(scenario)
    assert first.trace == second.trace


def test_hooks_on_every_request_change_no_outcome_and_break_no_invariant() -> None:
    # Hooks that await at every point, edit a header and log a field, and one that times out
    # (on_error "pass") on HEAD requests: the same answers as without hooks.
    plain = simulate(EVERYTHING)
    hooked = simulate(dataclasses.replace(EVERYTHING, hooks="hooks"))
    assert hooked.violations == []
    statuses = [[reply.status for reply in client.replies.done] for client in hooked.clients]
    assert statuses == [[reply.status for reply in c.replies.done] for c in plain.clients]
    # Every request the rules saw (not the unreadable head answered 400) ran the access hook.
    assert all(("sim_hook", str(r.status)) in r.extra for r in hooked.records if r.method)
