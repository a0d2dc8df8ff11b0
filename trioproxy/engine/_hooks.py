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
of its steps timed by the blocking watch (`hooks._watch`); a hook whose code has no await
(`cannot_wait`) cannot reach a deadline, so it runs as one timed step without the cancel
scope (most of a call's cost), awaited directly; one `Exchange` per hook per request holds
what the hook asked for and the request view, made only if the hook reads it. An
exception or a timeout is one diagnostics line with the hook's name and the request ID,
counted, and then ``on_error``: "pass" forgets what the hook asked for, 502/503 answers with
that status. The body points (`HookCalls.body_transform`) are chained in rule order.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from time import perf_counter
from typing import Any

import trio

from ..core._accesslog import AccessRecord
from ..core._answers import text_response
from ..core._errors import ProxyError
from ..core._headers import RequestPlan
from ..core._requestview import RequestView, ViewSource
from ..core._ruleengine import Decision, Triggered
from ..core._rulemodel import (
    Headers,
    HookAction,
    Response,
    RuleSet,
    apply_field_ops,
    apply_header_ops,
)
from ..hooks._api import Exchange, HookError, ResponseHead
from ..hooks._load import LoadedHook, load_hooks
from ..hooks._watch import BlockingWatch, cannot_wait

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
    label: str
    request: Callable[..., Any] | None  # its request point, if any
    request_sync: bool  # its request point `cannot_wait`: one timed step, no cancel scope
    later: bool  # it has a point after the request one: the request carries it further


def _hook(action: HookAction, loaded: LoadedHook, stats: HookStats) -> _Hook:
    later = any(getattr(loaded, point) is not None for point in _LATER_POINTS)
    request = loaded.request
    return _Hook(action, loaded, stats, loaded.label, request, cannot_wait(request), later)


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
    # The hooks of the last decision's actions, with their captures (`_resolve`): rules that
    # decide the same for every request hand every request the same actions tuple.
    last_actions: tuple[Triggered, ...] = ()
    last_hooks: tuple[tuple[_Hook, re.Match[bytes] | None], ...] = ()
    last_one: tuple[_Hook, re.Match[bytes] | None] | None = None  # the only one, if one

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

    def _resolve(
        self, actions: tuple[Triggered, ...]
    ) -> tuple[tuple[_Hook, re.Match[bytes] | None], ...]:
        """The hooks of a decision's actions, in rule order, each with its rule's captures
        (a fault is no hook); looked up once while the decisions' actions are the same."""
        found = []
        for triggered in actions:
            hook = self._find(triggered.action)
            if hook is not None:
                found.append((hook, triggered.captures))
        self.last_actions, self.last_hooks = actions, tuple(found)
        self.last_one = found[0] if len(found) == 1 else None
        return self.last_hooks

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
        self, decision: Decision, view: RequestView | ViewSource, request_id: bytes
    ) -> tuple[Response | None, HookCalls | None]:
        """Run the request points of the hooks the decision triggered, in rule order.

        ``view`` is the rules' view of the request, or what to make it of if a hook reads
        the request (`ViewSource`). Returns the answer that ends the request (a hook's, an
        on_error status, or the decision's own), and the calls whose edits and later points
        apply: None when no hook asked for anything and none has a later point (the request
        then goes on as if it had triggered no hook, and pays for nothing more). One
        coroutine, and a hook that cannot wait is awaited directly in one timed step (as
        `BlockingWatch.step` and `ended`, inline): no coroutine or cancel scope of ours per
        call, one object (the `Exchange`) per hook."""
        actions = decision.actions
        if actions is not self.last_actions:
            self._resolve(actions)
        one = self.last_one
        if one is None:
            self.users += 1
            try:
                return await self._each(decision, self.last_hooks, view, request_id)
            except BaseException:
                self._released()
                raise
        # One hook (most configurations): no list of exchanges and no loops over them; what
        # `_each` does for each hook, the same checks in the same order. The request counts in
        # `users` while its hook may wait (a reload may stop these hooks meanwhile) and from
        # when it is carried on; a hook that cannot wait lets no other task run, so a request
        # it carries nowhere is never counted.
        hook, captures = one
        exchange = Exchange((view, captures, request_id), hook.label, hook)
        function = hook.request
        if function is not None:
            if hook.request_sync:  # `call`'s first half, inline: every request runs it
                stats, watch = hook.stats, self.watch
                stats.calls += 1
                started = perf_counter()
                watch._step = step = (hook.label, request_id, started)
                try:
                    await function(exchange)  # (not `send`: no StopIteration made)
                    done = True
                except (Exception, SystemExit) as exc:  # sys.exit() is its error too
                    self._failed(hook, "request", request_id, exc)
                    done = False
                finally:
                    watch._step = None
                    took = perf_counter() - started
                    stats.seconds += took
                    if took >= watch.threshold_s:
                        watch._slow(step, took)
            else:
                self.users += 1
                try:
                    done = await self.call(exchange, request_id, "request", function, exchange)
                except BaseException:
                    self._released()
                    raise
                self.users -= 1  # (no checkpoint until counted again or `stopping` read below)
            if not done:
                if hook.action.on_error:
                    self.users += 1  # until `HookCalls.release`
                    answer = text_response(hook.action.on_error)
                    return answer, HookCalls(self, request_id, [exchange])
                exchange._forget()
            if exchange._answer is not None:
                self.users += 1
                return exchange._answer, HookCalls(self, request_id, [exchange])
        if exchange._asks or hook.later:  # carried to the response
            self.users += 1
            exchange._phase = "response"
            return decision.response, HookCalls(self, request_id, [exchange])
        exchange._phase = "access"  # an edit asked for from elsewhere now is refused
        if self.stopping and not self.users:  # (stopped while the hook waited)
            self.lifespans.cancel()
        return decision.response, None

    async def _each(
        self,
        decision: Decision,
        hooks: tuple[tuple[_Hook, re.Match[bytes] | None], ...],
        view: RequestView | ViewSource,
        request_id: bytes,
    ) -> tuple[Response | None, HookCalls | None]:
        """`on_request` for no hook (the decision's actions are faults) or several: each
        hook's request point in rule order (the caller counts this request in `users`, and
        releases it if this raises)."""
        exchanges: list[Exchange] = []
        for hook, captures in hooks:
            exchange = Exchange((view, captures, request_id), hook.label, hook)
            exchanges.append(exchange)
            function = hook.request
            if function is None:
                continue
            if hook.request_sync:  # as in `on_request`
                stats, watch = hook.stats, self.watch
                stats.calls += 1
                started = perf_counter()
                watch._step = step = (hook.label, request_id, started)
                try:
                    await function(exchange)
                    done = True
                except (Exception, SystemExit) as exc:
                    self._failed(hook, "request", request_id, exc)
                    done = False
                finally:
                    watch._step = None
                    took = perf_counter() - started
                    stats.seconds += took
                    if took >= watch.threshold_s:
                        watch._slow(step, took)
            else:
                done = await self.call(exchange, request_id, "request", function, exchange)
            if not done:
                if hook.action.on_error:
                    answer = text_response(hook.action.on_error)
                    return answer, HookCalls(self, request_id, exchanges)
                exchange._forget()
            if exchange._answer is not None:
                return exchange._answer, HookCalls(self, request_id, exchanges)
        carry = False
        for exchange in exchanges:
            carry = carry or exchange._asks or exchange._hook.later
        # Carried to the response; else an edit asked for from elsewhere now is refused.
        phase = "response" if carry else "access"
        for exchange in exchanges:
            exchange._phase = phase
        if carry:
            return decision.response, HookCalls(self, request_id, exchanges)
        self.users -= 1  # (`_released`, inline)
        if self.stopping and not self.users:
            self.lifespans.cancel()
        return decision.response, None

    # --- one call ---

    async def call(
        self,
        exchange: Exchange,
        request_id: bytes,
        point: str,
        function: Callable[..., Coroutine[Any, Any, Any]],
        *args: Any,
    ) -> bool:
        """Run one hook point; False when it failed or timed out. A function that
        `cannot_wait` runs as one timed step: no deadline could interrupt it (trio cancels
        only at checkpoints), so it has no cancel scope, most of what a call would cost.
        Any other runs under its deadline."""
        hook: _Hook = exchange._hook
        stats = hook.stats
        stats.calls += 1
        if cannot_wait(function):
            step = self.watch.step(hook.label, request_id)
            try:
                await function(*args)
                return True
            except (Exception, SystemExit) as exc:
                self._failed(hook, point, request_id, exc)
                return False
            finally:
                stats.seconds += self.watch.ended(step)
        started = trio.current_time()
        try:
            with trio.CancelScope() as scope:
                deadline = started + hook.action.timeout_s
                coro = function(*args)
                await self.watch.timed(hook.label, request_id, coro, scope=scope, deadline=deadline)
            if scope.cancelled_caught:
                stats.timeouts += 1
                log.warning(
                    "hook %s: %s timed out after %gs (request %s); on_error: %s",
                    hook.label,
                    point,
                    hook.action.timeout_s,
                    _text(request_id),
                    hook.action.on_error or "pass",
                )
                return False
            return True
        except (Exception, SystemExit) as exc:  # sys.exit() in a hook is its error too
            self._failed(hook, point, request_id, exc)
            return False
        finally:
            stats.seconds += trio.current_time() - started

    def _failed(self, hook: _Hook, point: str, request_id: bytes, exc: BaseException) -> None:
        hook.stats.errors += 1
        log.warning(
            "hook %s: %s failed (request %s): %s; on_error: %s",
            hook.label,
            point,
            _text(request_id),
            _describe(exc),
            hook.action.on_error or "pass",
        )


@dataclass(slots=True)
class HookCalls:
    """The hooks one request triggered, carried with it to its response head and access line:
    an `Exchange` per hook, in rule order."""

    hooks: HookSet
    request_id: bytes
    calls: list[Exchange] = field(default_factory=list)
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
        for exchange in self.calls:
            found = exchange._target or found
        return found

    def request_headers(self, headers: Headers) -> Headers:
        ops = [op for exchange in self.calls for op in exchange._request_ops]
        return apply_header_ops(headers, ops) if ops else headers

    def edit_request(self, plan: RequestPlan) -> None:
        """The plan takes the request points' edits, after the rules': its fields are set
        only when a hook asked for a header edit (most edit none)."""
        plan.target = self.target() or plan.target
        ops = [op for exchange in self.calls for op in exchange._request_ops]
        if ops:
            plan.fields = apply_field_ops(plan.fields, ops)

    def response_headers(self, headers: Sequence[tuple[bytes, bytes]]) -> Headers:
        ops = [op for exchange in self.calls for op in exchange._response_ops]
        return apply_header_ops(headers, ops) if ops else list(headers)

    # --- the response head ---

    async def on_response(self, status: int, headers: Headers) -> tuple[Response | None, Headers]:
        """Run the response points; a replacement answer, or the headers edited."""
        for exchange in self.calls:
            hook: _Hook = exchange._hook
            respond = hook.loaded.response
            if respond is None:
                continue
            head = ResponseHead(status, _texts(self.response_headers(headers)))
            rid = self.request_id
            if not await self.hooks.call(exchange, rid, "response", respond, exchange, head):
                if hook.action.on_error:
                    return text_response(hook.action.on_error), headers
                exchange._response_ops = ()
                exchange._answer = None
            if exchange._answer is not None:
                return exchange._answer, headers
        for exchange in self.calls:
            exchange._phase = "access"
        return None, self.response_headers(headers)

    # --- the bodies ---

    def body_transform(self, point: str) -> Transform | None:
        """The hooks' transformer of the request or response body (``point``), chained in
        rule order; None when no hook this request triggered has one."""
        calls = [e for e in self.calls if getattr(e._hook.loaded, point) is not None]
        if not calls:
            return None
        failed: set[int] = set()

        async def transform(chunk: bytes, end: bool) -> bytes:
            for index, exchange in enumerate(calls):
                if index not in failed:
                    chunk = await self._transform(exchange, point, chunk, end, failed, index)
            return chunk

        return transform

    async def _transform(
        self, exchange: Exchange, point: str, chunk: bytes, end: bool, failed: set[int], index: int
    ) -> bytes:
        hook: _Hook = exchange._hook
        function = getattr(hook.loaded, point)
        out: list[bytes] = []

        async def run() -> None:
            value = await function(exchange, chunk, end)
            if not isinstance(value, bytes | bytearray | memoryview):
                raise HookError(f"{point} must return bytes, returned {type(value).__name__}")
            out.append(bytes(value))

        if await self.hooks.call(exchange, self.request_id, point, run):
            return out[0]
        if hook.action.on_error:  # mid-body the status cannot change: the exchange ends
            raise ProxyError(f"hook {hook.label}: {point} failed", status=hook.action.on_error)
        failed.add(index)  # "pass": this slice and the rest go on as they came
        return chunk

    # --- the access line ---

    async def on_access(self, record: AccessRecord) -> None:
        for exchange in self.calls:
            exchange._phase = "access"
            access = exchange._hook.loaded.access
            if access is not None:
                await self.hooks.call(
                    exchange, self.request_id, "access", access, exchange, record.status
                )
        fields = [item for exchange in self.calls for item in exchange._fields.items()]
        if fields:
            record.extra = tuple(fields)


def _slow(stats: dict[str, HookStats], label: str, took: float) -> None:
    if label in stats:
        stats[label].slow_steps += 1


def _describe(exc: BaseException) -> str:
    where = ""
    tb = exc.__traceback__
    while tb is not None:  # the innermost frame: where the hook's code raised
        where = f" at {tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"
        tb = tb.tb_next
    return f"{exc!r}{where}"


def _text(request_id: bytes) -> str:
    return request_id.decode("ascii", "replace")


def _texts(headers: Sequence[tuple[bytes, bytes]]) -> tuple[tuple[str, str], ...]:
    return tuple((name.decode("latin-1"), value.decode("latin-1")) for name, value in headers)
