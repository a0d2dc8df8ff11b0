"""Name the hook that blocks the event loop: each step of hook code is timed, and a watchdog
thread speaks while a step is still running.

A deadline per call cannot catch ``time.sleep(1)`` in a hook: the loop is stopped, so no
deadline fires until the call returns. Timing every step does. A hook's coroutine is driven
through `BlockingWatch.timed`, which notes when each of its steps starts (a step: from
being resumed to its next suspension, as trio's ``Instrument.before/after_task_step`` would
see it, but for the hook's own code only); the watchdog, an OS thread, so it runs while the
loop is stuck, writes one diagnostics line naming the hook and the request once a step has
run for `threshold_s` (it looks then, or every `IDLE_S` while no step runs: each wake takes the
GIL from the loop), and the step's whole length is counted when it ends.

Why not a trio Instrument: one installed for the hooks' sake costs every task's every step,
hooked or not, and adding and removing one around each call cost 34 µs a call here (a
request takes a few hundred); timing the hook's own steps costs about a microsecond a step
and nothing at all for requests that trigger no hook.
"""

from __future__ import annotations

import dis
import inspect
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Generator
from functools import lru_cache
from types import CodeType, FunctionType, MethodType
from typing import Any, TypeVar

import trio

__all__ = ["BlockingWatch", "RequestId", "cannot_wait"]

log = logging.getLogger("trioproxy")

T = TypeVar("T")

# A step longer than this is a blocking call (a hook's honest work takes well under a
# millisecond a step): 50 ms is what a client would notice.
DEFAULT_THRESHOLD_S = 0.05

# How often the watchdog looks while no hook step runs (10 wakes a second, not 40).
IDLE_S = 0.1

# A request's ID, as the proxy holds it (bytes: decoded only for a diagnostics line), or
# what a step of a lifespan's is noted with ("lifespan").
RequestId = bytes | str

# The step running now: (hook label, request ID, when it started), or None.
_Step = tuple[str, RequestId, float]


class BlockingWatch:
    """Counts and reports steps of hook code longer than ``threshold_s``.

    ``on_slow(label, request_id, seconds)`` is called on the event loop after each slow step
    (the hook's metrics). Await hook code through `timed`; `run` is the watchdog."""

    def __init__(
        self,
        on_slow: Callable[[str, RequestId, float], None],
        threshold_s: float = DEFAULT_THRESHOLD_S,
    ) -> None:
        self.threshold_s = threshold_s
        # The watchdog's sleep while no step is running: a step that blocks is named within
        # this (or the threshold, if longer) of its start, so well within the second.
        self.idle_s = max(threshold_s, IDLE_S)
        self._on_slow = on_slow
        self._step: _Step | None = None
        self._reported: _Step | None = None  # the step the watchdog already named

    def timed(
        self,
        label: str,
        request_id: RequestId,
        coro: Coroutine[Any, Any, T],
        *,
        scope: trio.CancelScope | None = None,
        deadline: float = math.inf,
    ) -> Awaitable[T]:
        """``coro`` (a hook's), with each of its steps timed. ``scope`` (entered around this)
        takes ``deadline`` only when the hook first waits: a hook that returns without waiting
        cannot be cancelled anyway, and spares the deadline's bookkeeping."""
        return _Timed(self, (label, request_id), coro, scope, deadline)

    def step(self, label: str, request_id: RequestId) -> _Step:
        """Note the start of a step of hook code run without `timed`: a call of a function
        that `cannot_wait`, awaited directly (no coroutine of ours, no cancel scope: with no
        checkpoint in it, no deadline could interrupt it anyway). End it with `ended`."""
        step = self._step = (label, request_id, time.perf_counter())
        return step

    def ended(self, step: _Step) -> float:
        """The step noted by `step` is over: how long it took (counted if slow)."""
        self._step = None
        took = time.perf_counter() - step[2]
        if took >= self.threshold_s:
            self._slow(step, took)
        return took

    def nursery(
        self, nursery: trio.Nursery, label: str, on_error: Callable[[BaseException], None]
    ) -> _TimedNursery:
        """A nursery for a hook's lifespan: the tasks it starts are timed as the hook, and
        one that raises is ``on_error``'s, not the nursery's (it would end the proxy)."""
        return _TimedNursery(nursery, self, label, on_error)

    def _slow(self, step: _Step, took: float) -> None:
        if self._reported is not step:
            _report(step, took, done=True)
        self._on_slow(step[0], step[1], took)

    # --- the watchdog ---

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Watch from a thread until cancelled (start it in the server's nursery). A plain
        thread, not trio.to_thread: it never wakes the event loop (not even to say it has
        ended), so a run on a virtual clock stays the same run however the machine is."""
        stop = threading.Lock()
        stop.acquire()  # released to stop the thread: its waits are on this lock
        thread = threading.Thread(
            target=self._watch, args=(stop,), name="trioproxy hook watch", daemon=True
        )
        thread.start()
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            stop.release()  # it ends at its next wake; nothing waits for it

    def _watch(self, stop: threading.Lock) -> None:
        # A wake takes the GIL from the loop (a context switch each way): wake when a running
        # step would reach the threshold, else every `idle_s`, not at a fixed short period.
        # (`acquire`'s arguments positional: a keyword is parsed, as a new str, every wake.)
        wait_s = self.idle_s
        while not stop.acquire(True, wait_s):
            wait_s = self._check()

    def _check(self) -> float:
        """Report the running step if it is slow; how long to sleep until the next look."""
        step = self._step
        if step is None or step is self._reported:
            return self.idle_s
        took = time.perf_counter() - step[2]
        if took < self.threshold_s:
            return self.threshold_s - took  # it is slow if it still runs then
        if self._step is step:
            self._reported = step
            _report(step, took, done=False)
        return self.idle_s


def cannot_wait(function: object) -> bool:
    """Whether calling ``function`` makes a coroutine that ends in its first step: a plain
    ``async def`` (or a method of one) with no await, ``async for`` or ``async with`` in its
    own code, so nothing in it can suspend (a coroutine's frame suspends only where its code
    yields). Anything else - a callable object, a partial - is assumed to wait."""
    if type(function) is MethodType:
        function = function.__func__
    return type(function) is FunctionType and _never_yields(function.__code__)


@lru_cache(maxsize=1024)  # by code object: a hook's code is looked at once, not per call
def _never_yields(code: CodeType) -> bool:
    if not code.co_flags & inspect.CO_COROUTINE:
        return False
    return all(instruction.opname != "YIELD_VALUE" for instruction in dis.get_instructions(code))


class _Timed:
    """Drives a hook's coroutine, step by step, noting each step on the watch."""

    __slots__ = ("_coro", "_deadline", "_hook", "_scope", "_watch")

    def __init__(
        self,
        watch: BlockingWatch,
        hook: tuple[str, RequestId],
        coro: Coroutine[Any, Any, Any],
        scope: trio.CancelScope | None,
        deadline: float,
    ) -> None:
        self._watch, self._hook, self._coro = watch, hook, coro
        self._scope, self._deadline = scope, deadline

    def __await__(self) -> Generator[Any, Any, Any]:
        watch, (label, request_id), coro = self._watch, self._hook, self._coro
        scope = self._scope
        sent: Any = None
        thrown: BaseException | None = None
        while True:
            step = watch._step = (label, request_id, time.perf_counter())
            try:
                yielded = coro.send(sent) if thrown is None else coro.throw(thrown)
            except StopIteration as done:
                watch.ended(step)
                return done.value
            except BaseException:
                watch.ended(step)
                raise
            watch.ended(step)
            if scope is not None:  # about to wait for the first time: now the deadline counts
                scope.deadline = self._deadline
                scope = None
            try:
                sent, thrown = (yield yielded), None
            except BaseException as exc:  # thrown into us: pass it on to the hook
                sent, thrown = None, exc


class _TimedNursery:
    """What a hook's lifespan gets as its nursery: the tasks it starts (``start_soon``,
    ``start``) are timed as the hook, and an exception one raises once running goes to
    ``on_error``; everything else is the nursery's own."""

    def __init__(
        self,
        nursery: trio.Nursery,
        watch: BlockingWatch,
        label: str,
        on_error: Callable[[BaseException], None],
    ) -> None:
        self._nursery, self._watch, self._label = nursery, watch, label
        self._on_error = on_error

    def start_soon(self, function: Callable[..., Any], *args: Any, name: object = None) -> None:
        self._nursery.start_soon(self._run, function, args, name=name or function)

    async def start(self, function: Callable[..., Any], *args: Any, name: object = None) -> Any:
        return await self._nursery.start(self._run_started, function, args, name=name or function)

    async def _run(self, function: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            await self._watch.timed(self._label, "lifespan", function(*args))
        except (Exception, SystemExit) as exc:  # the hook's failure, not the proxy's
            self._on_error(exc)

    async def _run_started(
        self,
        function: Callable[..., Any],
        args: tuple[Any, ...],
        task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        status = _Started(task_status)
        try:
            await self._watch.timed(self._label, "lifespan", function(*args, task_status=status))
        except (Exception, SystemExit) as exc:
            if not status.done:
                raise  # before it started: `start` raises it in the lifespan, as trio's does
            self._on_error(exc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._nursery, name)


class _Started:
    """A task status that notes whether the task has said it started."""

    __slots__ = ("done", "inner")

    def __init__(self, inner: trio.TaskStatus[Any]) -> None:
        self.inner = inner
        self.done = False

    def started(self, value: Any = None) -> None:
        self.done = True
        self.inner.started(value)


def _report(step: _Step, took: float, *, done: bool) -> None:
    label, request_id, _ = step
    if isinstance(request_id, bytes):
        request_id = request_id.decode("ascii", "replace")
    state = "blocked" if done else "is blocking"
    log.warning(
        "hook %s %s the event loop for %.3fs (request %s): every connection waits;"
        " await instead, or use trioproxy.hooks.run_blocking",
        label,
        state,
        took,
        request_id,
    )
