"""Hooks at the exchange's seams: run each under its deadline, apply what it asked for.

The rules engine collects the hook actions of the rules a request matches (`Decision.actions`,
in rule order); `HookSet.on_request` runs their request points after the rules' own edits
and returns either an answer (the first hook that answers wins, over any later rule's answer)
or the `HookCalls` that carry the rest of the request's hook points: the response head
(`HookCalls.on_response`) and the access line (`HookCalls.on_access`). A request that
triggered no hook never reaches this module.

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
        hooks = load_hooks(hook_actions(rules), embedded)
        for loaded in hooks.values():
            stats.setdefault(loaded.label, HookStats())
        return cls(hooks, stats, watch)

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
    ) -> tuple[Response | None, HookCalls]:
        """Run the request points of the hooks the decision triggered, in rule order.

        Returns the answer that ends the request (a hook's, an on_error status, or the
        decision's own), and the calls whose edits and later points apply."""
        calls = HookCalls(self, request_id.decode("ascii", "replace"))
        self.users += 1
        try:
            return await self._request_points(calls, decision, view)
        except BaseException:
            calls.release()
            raise

    async def _request_points(
        self, calls: HookCalls, decision: Decision, view: RequestView
    ) -> tuple[Response | None, HookCalls]:
        for triggered in decision.actions:
            action = triggered.action
            if not isinstance(action, HookAction):
                continue
            loaded = self.hooks[action]
            request = Request._of(view, triggered.captures, calls.request_id)
            exchange = Exchange(request, loaded.label)
            call = _Call(action, loaded, exchange)
            calls.calls.append(call)
            if loaded.request is None:
                continue
            if not await calls.call(call, "request", loaded.request, exchange):
                if action.on_error:
                    return text_response(action.on_error), calls
                _forget(exchange)
            if exchange._answer is not None:
                return exchange._answer, calls
        for call in calls.calls:
            call.exchange._phase = "response"
        return decision.response, calls


@dataclass(slots=True)
class _Call:
    action: HookAction
    loaded: LoadedHook
    exchange: Exchange


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
        label = call.loaded.label
        stats = self.hooks.stats[label]
        stats.calls += 1
        watch = self.hooks.watch
        token = CURRENT_HOOK.set((label, self.request_id))
        started = trio.current_time()
        try:
            if cannot_wait(function):  # the usual hook: a cancel scope would be most of its cost
                watch.run_step(label, self.request_id, function(*args))
                return True
            with trio.CancelScope() as scope:
                deadline = started + call.action.timeout_s
                coro = function(*args)
                await watch.timed(label, self.request_id, coro, scope=scope, deadline=deadline)
            if scope.cancelled_caught:
                stats.timeouts += 1
                log.warning(
                    "hook %s: %s timed out after %gs (request %s); on_error: %s",
                    label,
                    point,
                    call.action.timeout_s,
                    self.request_id,
                    call.action.on_error or "pass",
                )
                return False
            return True
        except (Exception, SystemExit) as exc:  # sys.exit() in a hook is its error too
            stats.errors += 1
            log.warning(
                "hook %s: %s failed (request %s): %s; on_error: %s",
                label,
                point,
                self.request_id,
                _describe(exc),
                call.action.on_error or "pass",
            )
            return False
        finally:
            stats.seconds += trio.current_time() - started
            CURRENT_HOOK.reset(token)


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
