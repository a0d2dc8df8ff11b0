"""A deterministic simulation of the whole proxy: one scenario, one run, and what went wrong.

The real `ProxyServer` runs on a `MemoryNetwork` with trio's mock clock jumping whenever every
task waits, so minutes of timeouts take milliseconds and nothing depends on the machine.
trio's scheduler order comes from the scenario's seed and request IDs from a counter, so a
run is a function of its scenario: same scenario, same trace (`Outcome.trace`).

Checked after each run (`Outcome.violations`; an empty list is a pass):

- no byte of one client's exchange reaches another client, nor another request at the origin;
- the responses a client gets are valid HTTP, one per request and in order (each carries its
  request's token), and a client that waits for them never waits forever: every request it
  sent gets its response or a visible close;
- one access record per request: request IDs are never logged twice, a request the origin saw
  or a client got an answer to is logged with the status the client saw, and no request is
  logged that its client did not send;
- the proxy logs no error (an internal error is an exception nobody expected);
- whenever every task waits, the pool's count equals the upstream connections actually open
  (tunnels detached), its idle connections are open, and the proxy's count of client
  connections equals the ones open; after the stop nothing of the proxy is left: no
  connection open, no pool slot counted, no task of trioproxy's running.

The parts: `simworld` (scenarios, the origin, reading responses), `simclients` (the clients);
the hypothesis strategies and tests are in `test_simulation`.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import socket
from collections import Counter
from dataclasses import astuple, dataclass, replace

import hypothesis  # noqa: F401  (its trio plugin sorts each scheduler batch: see simulate)
import trio
import trio.testing
from trio._core import _run as trio_run_loop

from tests.support import make_settings
from trioproxy.config._settings import Settings
from trioproxy.core._accesslog import AccessRecord
from trioproxy.core._rulemodel import HookAction, Match, Rule, RuleSet
from trioproxy.engine._memory import MemoryNetwork
from trioproxy.engine._peer import UpstreamConnection
from trioproxy.engine._resolver import SockAddr
from trioproxy.engine._server import ProxyServer
from trioproxy.hooks import Exchange, ResponseHead

from .harness import ErrorLines
from .simclients import PROXY_ADDRESS, ClientLog, run_client
from .simworld import (
    ClientSpec,
    OriginLog,
    Replies,
    Scenario,
    method_of,
    owners,
    payload,
    serve_origin,
    token,
)

ORIGIN_ADDRESS = ("192.0.2.80", 80)
STOP_BOUND_S = 120.0  # after the clients: the proxy stops within this, or it hangs
PAUSE_S = 0.4  # a slow origin's pause between pieces of a response


def sim_settings(scenario: Scenario) -> Settings:
    """Short timeouts (they fire in virtual time) and small buffers (both the buffered and
    the streamed paths are taken at the sizes the scenarios draw)."""
    return make_settings(
        timeouts__client_header_s=3.0,
        timeouts__client_idle_s=5.0,
        timeouts__client_body_s=3.0,
        timeouts__client_send_s=3.0,
        timeouts__upstream_connect_s=2.0,
        timeouts__upstream_response_s=4.0,
        timeouts__upstream_read_s=3.0,
        timeouts__upstream_send_s=3.0,
        timeouts__pool_wait_s=2.0,
        timeouts__client_body_total_s=10.0,
        timeouts__drain_s=scenario.drain_s,
        timeouts__tunnel_idle_s=6.0,
        timeouts__tunnel_fin_s=1.0,
        limits__request_buffer_bytes=1024,
        limits__response_buffer_bytes=1024,
        limits__max_connections=scenario.max_connections,
        limits__keepalive_requests=scenario.keepalive_requests,
        upstream__pool_size=scenario.pool_size,
        upstream__max_connections=scenario.upstream_max_connections,
        upstream__idle_timeout_s=2.0,
    )


class SimHook:
    """Awaits at every hook point (a checkpoint where a cancellation or a stop can land) and
    edits only what no invariant reads: a response header and an access-log field."""

    async def request(self, exchange: Exchange) -> None:
        await trio.lowlevel.checkpoint()
        exchange.set_request_header("X-Sim-Hook", "1")

    async def response(self, exchange: Exchange, response: ResponseHead) -> None:
        await trio.sleep(0.01)
        exchange.set_response_header("X-Sim-Hook", str(response.status))

    async def access(self, exchange: Exchange, status: int) -> None:
        await trio.lowlevel.checkpoint()
        exchange.log("sim_hook", str(status))


async def too_slow(exchange: Exchange) -> None:
    await trio.sleep(1.0)  # past its timeout: on_error "pass", the request goes on


def with_hooks(settings: Settings, hooks: str) -> tuple[Settings, dict[str, object] | None]:
    if hooks == "none":
        return settings, None
    rules = (
        Rule(1, actions=(HookAction("", "sim", timeout_s=2.0),)),
        Rule(2, match=Match(methods=frozenset({b"HEAD"})), actions=(HookAction("", "slow", 0.2),)),
    )
    return replace(settings, rules=RuleSet(rules)), {"sim": SimHook(), "slow": too_slow}


# --- The world ----------------------------------------------------------------------------------


class Probe(trio.abc.Instrument):
    """Checks the world's counts each time every task waits (nothing runnable: the clock is
    about to jump), the one moment the proxy's counts and the network's state must agree;
    and stops the proxy after the scenario's number of task steps, if it has one (so a
    cancellation can land at any checkpoint, not only where the clock stands still)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.checks = 0
        self.steps = 0

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if self.world.started:
            self.steps += 1
            if self.steps == self.world.scenario.stop_step:
                self.world.stop()

    def before_io_wait(self, timeout: float) -> None:
        if trio.lowlevel.current_statistics().tasks_runnable == 0:
            self.checks += 1
            self.world.check_counts()


@dataclass
class Outcome:
    records: list[AccessRecord]
    clients: list[ClientLog]
    origin: OriginLog
    violations: list[str]
    quiescent_checks: int = 0
    steps: int = 0  # task steps while the proxy served
    ended_at: float = 0.0

    @property
    def trace(self) -> tuple[object, ...]:
        """Everything observable of a run, wall-clock times left out."""
        records = [astuple(record)[1:] for record in self.records]  # (start_wall first)
        received = [bytes(client.received) for client in self.clients]
        return (records, received, self.origin.seen, self.quiescent_checks, self.steps)


class World:
    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.network = MemoryNetwork(capacity=4096)
        self.records: list[AccessRecord] = []
        settings, hooks = with_hooks(sim_settings(scenario), scenario.hooks)
        self.server = ProxyServer(
            settings,
            ("origin.test", 80),
            self.records.append,
            lookup=_lookup,
            connect=self.network.connect,
            hooks=hooks,
        )
        # Request IDs from a counter, so a run is a function of its scenario.
        ids = itertools.count()
        self.server.ctx = dataclasses.replace(
            self.server.ctx, new_request_id=lambda: b"sim%029d" % next(ids)
        )
        self.proxy_listener = self.network.listen(PROXY_ADDRESS)
        self.origin_listener = self.network.listen(ORIGIN_ADDRESS)
        self.detached: set[int] = set()  # the upstream ends the proxy gave to tunnels
        detach = self.server.pool.detach

        def note_detached(conn: object) -> None:
            assert isinstance(conn, UpstreamConnection)
            self.detached.add(id(conn.transport))
            detach(conn)

        self.server.pool.detach = note_detached  # type: ignore[method-assign]  # (a probe)
        self.origin = OriginLog()
        self.clients = [
            ClientLog(i, Replies(_asked(spec))) for i, spec in enumerate(scenario.clients)
        ]
        self.violations: list[str] = []
        self.proxy_scope = trio.CancelScope()
        self.started = False  # the proxy is serving

    def behaviour(self, tok: bytes) -> tuple[str, int]:
        """How the origin answers the request with this token."""
        client, request = (int(part) for part in tok[1:].split(b"."))
        spec = self.scenario.clients[client].requests[request]
        return spec.origin, spec.response_size

    def check_counts(self) -> None:
        """The proxy's counts against what is open (at quiescence and after the stop)."""
        pool = self.server.pool
        upstream = [
            end
            for end in self.origin_listener.open_ends(accepted=False)
            if id(end) not in self.detached
        ]
        downstream = self.proxy_listener.open_ends(accepted=True)
        found = []
        if pool.open_count != len(upstream):
            found.append(f"pool counts {pool.open_count} open, {len(upstream)} are")
        if any(conn.transport.closed for conn in pool._idle):
            found.append("a closed connection idles in the pool")
        if self.server.ctx.stats.connections_open != len(downstream):
            found.append(
                f"{self.server.ctx.stats.connections_open} client connections counted open,"
                f" {len(downstream)} are"
            )
        for problem in found:
            self._violation(f"at {trio.current_time():.3f}: {problem}")

    def _violation(self, message: str) -> None:
        if message not in self.violations and len(self.violations) < 20:
            self.violations.append(message)

    def stop(self) -> None:
        """Drain the proxy, or cancel it outright, as the scenario says."""
        if self.scenario.stop == "drain":
            self.server.shutdown()
        elif self.scenario.stop == "cancel":
            self.proxy_scope.cancel()

    async def run(self) -> None:
        scenario = self.scenario
        async with trio.open_nursery() as world:
            world.start_soon(
                serve_origin, self.origin_listener, self.behaviour, self.origin, PAUSE_S
            )
            stopped = trio.Event()

            async def run_proxy(task_status: trio.TaskStatus[None]) -> None:
                try:
                    with self.proxy_scope:
                        await self.server.run([self.proxy_listener], task_status=task_status)
                finally:
                    stopped.set()

            async def stop_at() -> None:
                await trio.sleep_until(scenario.stop_s)
                self.stop()

            await world.start(run_proxy)
            self.started = True
            if scenario.stop != "after" and not scenario.stop_step:
                world.start_soon(stop_at)
            async with trio.open_nursery() as clients:
                for index, spec in enumerate(scenario.clients):
                    clients.start_soon(run_client, self.network, index, spec, self.clients[index])
            self.server.shutdown()
            with trio.move_on_after(STOP_BOUND_S):
                await stopped.wait()
            if not stopped.is_set():
                self._violation("the proxy did not stop")
                self.proxy_scope.cancel()
                await stopped.wait()
            self.check_counts()
            self._check_stopped()
            world.cancel_scope.cancel()
        for listener in (self.proxy_listener, self.origin_listener):
            if listener.open_ends(accepted=True) or listener.open_ends(accepted=False):
                self._violation("a connection is still open after the run")

    def _check_stopped(self) -> None:
        pool, stats = self.server.pool, self.server.ctx.stats
        if pool.open_count or pool.idle_count or pool.waiting_count:
            self._violation(
                f"after the stop: {pool.open_count} open, {pool.idle_count} idle,"
                f" {pool.waiting_count} waiting for a slot"
            )
        if stats.connections_open or stats.tunnels_open:
            self._violation(f"after the stop: {stats.connections_open} connections counted")
        leftovers = [name for name in _task_names() if ".trioproxy." in f".{name}"]
        if leftovers:
            self._violation(f"tasks of trioproxy outlive the server: {leftovers}")


def _asked(spec: ClientSpec) -> list[tuple[bytes, bool]]:
    if spec.ending == "garbage":
        return [(b"GET", False)]
    return [(method_of(r), r.upgrade) for r in spec.requests]


async def _lookup(host: str, port: int) -> list[SockAddr]:
    await trio.lowlevel.checkpoint()
    return [(socket.AF_INET, ORIGIN_ADDRESS)]


def _task_names() -> list[str]:
    """The coroutine of every task running now (module and name)."""
    names = []
    stack = [trio.lowlevel.current_root_task()]
    while stack:
        task = stack.pop()
        if task is None:
            continue
        code = getattr(task.coro, "cr_code", None)
        module = task.coro.cr_frame.f_globals.get("__name__", "") if task.coro.cr_frame else ""
        names.append(f"{module}.{code.co_name if code else task.name}")
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return names


# --- Running and judging ------------------------------------------------------------------------


def simulate(scenario: Scenario) -> Outcome:
    """Run ``scenario`` to the end in its own trio run and judge it."""
    world = World(scenario)
    probe = Probe(world)
    # trio runs each batch of runnable tasks in an order from this Random, after sorting
    # the batch by task creation (only when Hypothesis is imported: a set's order would
    # otherwise leak in). Seeded, the run is a function of the scenario.
    assert trio_run_loop._ALLOW_DETERMINISTIC_SCHEDULING
    trio_run_loop._r.seed(scenario.seed)
    errors = ErrorLines()
    logger = logging.getLogger("trioproxy")
    logger.addHandler(errors)
    try:
        ended_at = trio.run(
            _run_and_time,
            world,
            clock=trio.testing.MockClock(autojump_threshold=0),
            instruments=[probe],
        )
    finally:
        logger.removeHandler(errors)
    outcome = Outcome(world.records, world.clients, world.origin, world.violations)
    outcome.violations += [f"the proxy logged an error: {line}" for line in errors.messages]
    outcome.quiescent_checks, outcome.steps, outcome.ended_at = probe.checks, probe.steps, ended_at
    outcome.violations += judge(scenario, outcome)
    return outcome


async def _run_and_time(world: World) -> float:
    await world.run()
    return trio.current_time()


def judge(scenario: Scenario, outcome: Outcome) -> list[str]:
    """The invariants over what the clients, the origin and the access log saw."""
    found = list(outcome.origin.violations)
    for log in outcome.clients:
        found += _judge_client(scenario.clients[log.index], log)
    found += _judge_records(outcome)
    return found


def _judge_client(spec: ClientSpec, log: ClientLog) -> list[str]:
    i, found = log.index, []
    if owners(log.received) - {i}:
        found.append(f"client {i} got bytes of clients {owners(log.received) - {i}}")
    if log.replies.error:
        found.append(f"client {i}: {log.replies.error}")
    if log.hung:
        found.append(f"client {i} still waiting at the end of the world")
    for j, reply in enumerate(log.replies.done):
        if spec.ending == "garbage":
            break
        tok = token(i, j)
        if (reply.header(b"x-token") or tok) != tok:
            found.append(f"client {i} request {j} got the answer to {reply.header(b'x-token')!r}")
        elif reply.header(b"x-token") and reply.body != payload(tok, len(reply.body)):
            found.append(f"client {i} request {j} got a body not its own: {reply.body[:80]!r}")
    waited = spec.ending in ("read", "half_close") and not (log.gave_up or log.refused)
    answered = len(log.replies.done) >= log.requests_sent
    if waited and not (answered or log.closed_by_proxy or log.replies.switched):
        found.append(
            f"client {i}: {log.requests_sent} requests sent, {len(log.replies.done)} answers"
            " and no close"
        )
    return found


def _judge_records(outcome: Outcome) -> list[str]:
    found = []
    by_id = {record.request_id: record for record in outcome.records}
    twice = [rid for rid, n in Counter(r.request_id for r in outcome.records).items() if n > 1]
    if twice:
        found.append(f"request IDs logged more than once: {twice}")
    heads_sent = {log.index: log.heads_sent for log in outcome.clients}
    for rid in by_id:
        if rid.startswith(b"t"):
            client, request = (int(part) for part in rid[1:].split(b"."))
            if request >= heads_sent[client]:
                found.append(f"{rid!r} logged, but its head was never sent whole")
    for tok in outcome.origin.seen:
        if tok not in by_id:
            found.append(f"{tok!r} reached the origin but is not in the access log")
    for log in outcome.clients:
        for reply in log.replies.done:
            answered = reply.header(b"x-request-id")
            if answered is None:
                continue
            record = by_id.get(answered)
            if record is None:
                found.append(f"client {log.index}: a {reply.status} for {answered!r}, not logged")
            elif record.status != reply.status:
                found.append(f"{answered!r}: client got {reply.status}, log says {record.status}")
    return found
