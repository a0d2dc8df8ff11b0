"""Hooks at the exchange's seams: run each under its deadline, apply what it asked for.

The rules engine collects the hook actions of the rules a request matches (`Decision.actions`,
in rule order); `HookSet.on_request` runs their request points after the rules' own edits
and returns either an answer (the first hook that answers wins, over any later rule's answer)
or the `HookCalls` that carry the rest of the request's hook points: the response head
(`HookCalls.on_response`) and the access line (`HookCalls.on_access`). A request that
triggered no hook never reaches this module; one whose hooks asked for nothing and define no
later point leaves it after the request points, with no `HookCalls` to carry (what a hook
needs per call, its stats and whether its code can wait, is looked up once per configuration,
in `_Hook`).

Every call runs under its rule's ``timeout_s`` (set when the hook first waits), with each
of its steps timed by the blocking watch (`hooks._watch`) and `CURRENT_HOOK` set; a hook
whose code has no await (`cannot_wait`) cannot reach a deadline, so it runs as one timed
step without the cancel scope (most of a call's cost); an
exception or a timeout is one diagnostics line with the hook's name and the request ID,
counted, and then ``on_error``: "pass" forgets what the hook asked for, 502/503 answers with
that status. The body points (`HookCalls.body_transform`) are chained in rule order.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import trio

from ..core._accesslog import AccessRecord
from ..core._answers import text_response
from ..core._errors import ProxyError
from ..core._requestview import RequestView
from ..core._ruleengine import Decision
from ..core._rulemodel import Headers, HookAction, Response, RuleSet, apply_header_ops
from ..hooks._api import Exchange, HookError, Request, ResponseHead
from ..hooks._load import LoadedHook, load_hooks
from ..hooks._watch import CURRENT_HOOK, BlockingWatch, cannot_wait

__all__ = ["HookCalls", "HookSet", "HookStats", "Transform"]

# A body transformer: each slice, then b"" with end=True; returns what to forward instead.
Transform = Callable[[bytes, bool], Awaitable[bytes]]

log = logging.getLogger("trioproxy")


@dataclass(slots=True)
class HookStats:
    """One hook's counters (kept across reloads, by label)."""

    calls: int = 0
    errors: int = 0
    timeouts: int = 0
    slow_steps: int = 0
    seconds: float = 0.0


def hook_actions(rules: RuleSet) -> list[HookAction]:
    return [a for rule in rules.rules for a in rule.actions if isinstance(a, HookAction)]


@dataclass(slots=True)
class _Hook:
    """One rule's hook action with what each call needs, looked up once per configuration."""

    action: HookAction
    loaded: LoadedHook
    stats: HookStats
    request_sync: bool  # its request point `cannot_wait`: one timed step, no cancel scope
    later: bool  # it has a point after the request one: the request carries it further


def _hook(action: HookAction, loaded: LoadedHook, stats: HookStats) -> _Hook:
    later = any(getattr(loaded, point) is not None for point in _LATER_POINTS)
    return _Hook(action, loaded, stats, cannot_wait(loaded.request), later)


_LATER_POINTS = ("response", "access", "request_body", "response_body")


@dataclass(slots=True)
class HookSet:
    """The hooks of one configuration, loaded; shared by every request that started under it."""

    hooks: dict[HookAction, LoadedHook]
    stats: dict[str, HookStats]
    watch: BlockingWatch
    lifespans: trio.CancelScope = field(default_factory=trio.CancelScope)
    # Requests whose hooks are running or still to run (their response or access points):
    # a replaced set's lifespans end when the last of them is done.
    users: int = 0
    stopping: bool = False
    # By the identity of each rule's action object (kept alive here): a request looks its
    # hooks up without hashing the action's fields (its source bytes among them).
    by_action: dict[int, _Hook] = field(default_factory=dict)

    @classmethod
    def load(
        cls,
        rules: RuleSet,
        *,
        embedded: Mapping[str, object] | None = None,
        stats: dict[str, HookStats] | None = None,
        watch: BlockingWatch | None = None,
    ) -> HookSet:
        """Raises `HookLoadError` when a hook file cannot be run or a name is not a hook."""
        stats = {} if stats is None else stats
        if watch is None:
            watch = BlockingWatch(lambda label, _rid, took: _slow(stats, label, took))
        actions = hook_actions(rules)
        hooks = load_hooks(actions, embedded)
        for loaded in hooks.values():
            stats.setdefault(loaded.label, HookStats())
        by_action = {id(a): _hook(a, hooks[a], stats[hooks[a].label]) for a in actions}
        return cls(hooks, stats, watch, by_action=by_action)

    def _find(self, action: object) -> _Hook | None:
        """The hook of a triggered action; None for an action that is no hook (a fault)."""
        hook = self.by_action.get(id(action))
        if hook is None and isinstance(action, HookAction):  # not one of the rules' objects
            loaded = self.hooks[action]
            hook = _hook(action, loaded, self.stats.setdefault(loaded.label, HookStats()))
        return hook

    def __bool__(self) -> bool:
        return bool(self.hooks)

    # --- lifespans ---

    async def run_lifespans(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Each hook's lifespan, in a nursery that lives until `stop` (or the server ends)."""
        with self.lifespans:
            async with trio.open_nursery() as nursery:
                for loaded in {h.label: h for h in self.hooks.values()}.values():
                    if loaded.lifespan is not None:
                        nursery.start_soon(self._lifespan, loaded, nursery)
                task_status.started()
                await trio.sleep_forever()

    async def _lifespan(self, loaded: LoadedHook, nursery: trio.Nursery) -> None:
        assert loaded.lifespan is not None
        CURRENT_HOOK.set((loaded.label, "lifespan"))  # this task's own context
        watch, label = self.watch, loaded.label
        try:
            timed = watch.nursery(nursery, label, partial(self._lifespan_failed, label))
            await watch.timed(label, "lifespan", loaded.lifespan(timed))
        except (Exception, SystemExit) as exc:  # as a request point's: the hook's error
            self._lifespan_failed(label, exc)

    def _lifespan_failed(self, label: str, exc: BaseException) -> None:
        """A lifespan, or a task it started, raised: named and counted; the proxy serves on."""
        self.stats[label].errors += 1
        log.warning("hook %s: lifespan failed: %s", label, _describe(exc))

    def stop(self, grace_s: float = 0.0) -> None:
        """End the lifespans' tasks (a reload replaced these hooks): once the requests using
        these hooks are done, or after ``grace_s`` at the latest (the proxy's drain_s)."""
        self.stopping = True
        if not self.users:
            self.lifespans.cancel()
        elif grace_s:
            self.lifespans.deadline = min(self.lifespans.deadline, trio.current_time() + grace_s)

    def _released(self) -> None:
        self.users -= 1
        if self.stopping and not self.users:
            self.lifespans.cancel()

    # --- the request ---

    async def on_request(
        self, decision: Decision, view: RequestView, request_id: bytes
    ) -> tuple[Response | None, HookCalls | None]:
        """Run the request points of the hooks the decision triggered, in rule order.

        Returns the answer that ends the request (a hook's, an on_error status, or the
        decision's own), and the calls whose edits and later points apply: None when no hook
        asked for anything and none has a later point (the request then goes on as if it had
        triggered no hook, and pays for nothing more). One coroutine, and a hook that cannot
        wait is called without one of ours: each would be a frame made per request."""
        calls: list[_Call] = []
        rid = request_id.decode("ascii", "replace")
        by_action = self.by_action
        self.users += 1
        try:
            for triggered in decision.actions:
                hook = by_action.get(id(triggered.action)) or self._find(triggered.action)
                if hook is None:
                    continue
                loaded = hook.loaded
                exchange = Exchange(Request._of(view, triggered.captures, rid), loaded.label)
                call = _Call(hook, exchange)
                calls.append(call)
                if loaded.request is None:
                    continue
                if hook.request_sync:
                    done = self.run_step(call, rid, "request", loaded.request, exchange)
                else:
                    done = await self.run_point(call, rid, "request", loaded.request, exchange)
                if not done:
                    if hook.action.on_error:
                        return text_response(hook.action.on_error), HookCalls(self, rid, calls)
                    _forget(exchange)
                if exchange._answer is not None:
                    return exchange._answer, HookCalls(self, rid, calls)
        except BaseException:
            self._released()
            raise
        for call in calls:
            call.exchange._phase = "response"
        for call in calls:
            if call.carried():
                return decision.response, HookCalls(self, rid, calls)
        for call in calls:  # (an edit asked for from elsewhere now is refused)
            call.exchange._phase = "access"
        self._released()
        return decision.response, None

    # --- one call ---

    def run_step(
        self,
        call: _Call,
        request_id: str,
        point: str,
        function: Callable[..., Coroutine[Any, Any, Any]],
        *args: Any,
    ) -> bool:
        """Run one hook point whose function `cannot_wait`, as one timed step: no deadline
        could interrupt it (trio cancels only at checkpoints), so it has no cancel scope, most
        of what a call would cost. False when it failed."""
        hook = call.hook
        label, stats = hook.loaded.label, hook.stats
        stats.calls += 1
        token = CURRENT_HOOK.set((label, request_id))
        started = time.perf_counter()  # (trio's clock costs three calls a read)
        try:
            self.watch.run_step(label, request_id, function(*args))
            return True
        except (Exception, SystemExit) as exc:  # sys.exit() in a hook is its error too
            self._failed(hook, point, request_id, exc)
            return False
        finally:
            stats.seconds += time.perf_counter() - started
            CURRENT_HOOK.reset(token)

    async def run_point(
        self,
        call: _Call,
        request_id: str,
        point: str,
        function: Callable[..., Coroutine[Any, Any, Any]],
        *args: Any,
    ) -> bool:
        """Run one hook point under its deadline; False when it failed or timed out."""
        hook = call.hook
        label, stats = hook.loaded.label, hook.stats
        stats.calls += 1
        token = CURRENT_HOOK.set((label, request_id))
        started = trio.current_time()
        try:
            with trio.CancelScope() as scope:
                deadline = started + hook.action.timeout_s
                coro = function(*args)
                await self.watch.timed(label, request_id, coro, scope=scope, deadline=deadline)
            if scope.cancelled_caught:
                stats.timeouts += 1
                log.warning(
                    "hook %s: %s timed out after %gs (request %s); on_error: %s",
                    label,
                    point,
                    hook.action.timeout_s,
                    request_id,
                    hook.action.on_error or "pass",
                )
                return False
            return True
        except (Exception, SystemExit) as exc:  # sys.exit() in a hook is its error too
            self._failed(hook, point, request_id, exc)
            return False
        finally:
            stats.seconds += trio.current_time() - started
            CURRENT_HOOK.reset(token)

    def _failed(self, hook: _Hook, point: str, request_id: str, exc: BaseException) -> None:
        hook.stats.errors += 1
        log.warning(
            "hook %s: %s failed (request %s): %s; on_error: %s",
            hook.loaded.label,
            point,
            request_id,
            _describe(exc),
            hook.action.on_error or "pass",
        )


@dataclass(slots=True)
class _Call:
    hook: _Hook
    exchange: Exchange

    @property
    def action(self) -> HookAction:
        return self.hook.action

    @property
    def loaded(self) -> LoadedHook:
        return self.hook.loaded

    def carried(self) -> bool:
        """Whether the request must carry this call on: a later point, or something asked."""
        exchange = self.exchange
        return (
            self.hook.later
            or exchange._answer is not None
            or exchange._target is not None
            or bool(exchange._request_ops or exchange._response_ops or exchange._fields)
        )


@dataclass(slots=True)
class HookCalls:
    """The hooks one request triggered, carried with it to its response head and access line."""

    hooks: HookSet
    request_id: str
    calls: list[_Call] = field(default_factory=list)
    released: bool = False

    def release(self) -> None:
        """The request is done with its hooks (after its access line)."""
        if not self.released:
            self.released = True
            self.hooks._released()

    # --- what the request points asked for ---

    def target(self) -> bytes | None:
        """The last rewrite asked for (hooks run in rule order: the later one decides)."""
        found = None
        for call in self.calls:
            found = call.exchange._target or found
        return found

    def request_headers(self, headers: Headers) -> Headers:
        ops = [op for call in self.calls for op in call.exchange._request_ops]
        return apply_header_ops(headers, ops) if ops else headers

    def response_headers(self, headers: Sequence[tuple[bytes, bytes]]) -> Headers:
        ops = [op for call in self.calls for op in call.exchange._response_ops]
        return apply_header_ops(headers, ops) if ops else list(headers)

    # --- the response head ---

    async def on_response(self, status: int, headers: Headers) -> tuple[Response | None, Headers]:
        """Run the response points; a replacement answer, or the headers edited."""
        for call in self.calls:
            respond = call.loaded.response
            if respond is None:
                continue
            exchange = call.exchange
            head = ResponseHead(status, _texts(self.response_headers(headers)))
            if not await self.call(call, "response", respond, exchange, head):
                if call.action.on_error:
                    return text_response(call.action.on_error), headers
                exchange._response_ops.clear()
                exchange._answer = None
            if exchange._answer is not None:
                return exchange._answer, headers
        for call in self.calls:
            call.exchange._phase = "access"
        return None, self.response_headers(headers)

    # --- the bodies ---

    def body_transform(self, point: str) -> Transform | None:
        """The hooks' transformer of the request or response body (``point``), chained in
        rule order; None when no hook this request triggered has one."""
        calls = [call for call in self.calls if getattr(call.loaded, point) is not None]
        if not calls:
            return None
        failed: set[int] = set()

        async def transform(chunk: bytes, end: bool) -> bytes:
            for index, call in enumerate(calls):
                if index not in failed:
                    chunk = await self._transform(call, point, chunk, end, failed, index)
            return chunk

        return transform

    async def _transform(
        self, call: _Call, point: str, chunk: bytes, end: bool, failed: set[int], index: int
    ) -> bytes:
        function = getattr(call.loaded, point)
        out: list[bytes] = []

        async def run() -> None:
            value = await function(call.exchange, chunk, end)
            if not isinstance(value, bytes | bytearray | memoryview):
                raise HookError(f"{point} must return bytes, returned {type(value).__name__}")
            out.append(bytes(value))

        if await self.call(call, point, run):
            return out[0]
        if call.action.on_error:  # mid-body the status cannot change: the exchange ends
            raise ProxyError(
                f"hook {call.loaded.label}: {point} failed", status=call.action.on_error
            )
        failed.add(index)  # "pass": this slice and the rest go on as they came
        return chunk

    # --- the access line ---

    async def on_access(self, record: AccessRecord) -> None:
        for call in self.calls:
            call.exchange._phase = "access"
            if call.loaded.access is not None:
                await self.call(call, "access", call.loaded.access, call.exchange, record.status)
        fields = [item for call in self.calls for item in call.exchange._fields.items()]
        if fields:
            record.extra = tuple(fields)

    # --- one call ---

    async def call(
        self, call: _Call, point: str, function: Callable[..., Coroutine[Any, Any, Any]], *args: Any
    ) -> bool:
        """Run one hook point under its deadline; False when it failed or timed out."""
        if cannot_wait(function):
            return self.hooks.run_step(call, self.request_id, point, function, *args)
        return await self.hooks.run_point(call, self.request_id, point, function, *args)


def _slow(stats: dict[str, HookStats], label: str, took: float) -> None:
    if label in stats:
        stats[label].slow_steps += 1


def _forget(exchange: Exchange) -> None:
    """A failed hook with on_error "pass": as if it had asked for nothing."""
    exchange._answer = exchange._target = None
    exchange._request_ops.clear()
    exchange._response_ops.clear()


def _describe(exc: BaseException) -> str:
    where = ""
    tb = exc.__traceback__
    while tb is not None:  # the innermost frame: where the hook's code raised
        where = f" at {tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"
        tb = tb.tb_next
    return f"{exc!r}{where}"


def _texts(headers: Sequence[tuple[bytes, bytes]]) -> tuple[tuple[str, str], ...]:
    return tuple((name.decode("latin-1"), value.decode("latin-1")) for name, value in headers)
