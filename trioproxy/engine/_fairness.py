"""When a fairness yield may be skipped: nobody else is runnable, and this task has done no
other unyielded syscall since it last went through the scheduler.

A syscall that completed without waiting is followed by a yield (`_peer`), so one connection
whose sockets are always ready cannot hold the loop. When no other task is queued to run, that
yield is a whole scheduler pass for nothing: most requests make two of them (the request sent
upstream, the response sent to the client), each followed by a real wait soon after. So the
first such yield in a task's step is skipped when trio's run queue is empty; a second one in
the same step always yields. Work between two yields thus stays bounded (two syscalls and
what follows them instead of one), tasks waiting on I/O that the loop has not polled yet wait
at most that much longer, and a flood (pipelined requests answered by rules, an always-ready
body) still yields at every other syscall.

The cancellation check before each syscall (trio's ``checkpoint_if_cancelled``) is a
coroutine, made and awaited before every read and write; `checkpoint_due` does its usual
case, nothing to do but count the cancel point, without one.

The yield itself (`_peer`'s hot reads and writes) is trio's trap awaited directly, as
``cancel_shielded_checkpoint`` awaits it, without that coroutine around it (`SHIELDED_YIELD`).

This reads trio internals, the run queue (``Runner.runq``), a task's count of passes
through the scheduler (``Task._schedule_points``) and what ``checkpoint_if_cancelled`` reads,
checked at import: a trio without them fails here with a clear message instead of silently
losing the fairness (the trio pin in pyproject.toml is the range known to have them).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from types import ModuleType

import trio
from trio._core import _run, _traps

_KNOWN = "trio 0.27 to 0.35"


def check_internals(run: ModuleType = _run, traps: ModuleType = _traps) -> None:
    """Raise ImportError, naming what is missing, unless ``run`` (trio's ``_core._run``)
    has the internals `may_skip_yield` and `checkpoint_due` read, and ``traps`` (its
    ``_core._traps``) the trap `SHIELDED_YIELD` awaits."""
    wanted = (
        ("", "GLOBAL_RUN_CONTEXT"),
        ("Runner", "runq"),
        ("Task", "_schedule_points"),
        ("Runner", "ki_pending"),
        ("Task", "_cancel_status"),
        ("Task", "_cancel_points"),
        ("CancelStatus", "effectively_cancelled"),
    )
    missing = [
        f"{owner}.{name}" if owner else name
        for owner, name in wanted
        if not hasattr(getattr(run, owner, None) if owner else run, name)
    ]
    missing += [
        f"_traps.{name}"
        for name in ("_async_yield", "CancelShieldedCheckpoint")
        if not hasattr(traps, name)
    ]
    if missing:
        raise ImportError(
            f"trioproxy reads trio's scheduler internals ({', '.join(missing)}), which trio "
            f"{trio.__version__} does not have; known to work: {_KNOWN}. Install a trio in "
            "that range, or adapt trioproxy/engine/_fairness.py"
        )


check_internals()

# trio's ``cancel_shielded_checkpoint()`` is ``(await trap(CancelShieldedCheckpoint)).unwrap()``
# in a coroutine of its own; ``await SHIELDED_YIELD(SHIELDED)`` is the same pass through the
# scheduler (uncancellable) with neither that coroutine nor the unwrap: trio resumes a task
# from this trap with ``Value(None)`` always (``Runner.reschedule``'s default), so there is
# nothing to unwrap. Four of these a request, each a frame and two calls less.
SHIELDED_YIELD: Callable[[object], Awaitable[object]] = _traps._async_yield
SHIELDED = _traps.CancelShieldedCheckpoint

_CONTEXT = RUN_CONTEXT = _run.GLOBAL_RUN_CONTEXT  # (`RUN_CONTEXT`: for `_peer`'s inline copies)
# The step (the task's count of scheduler passes) in which this task last skipped a yield.
# Task-local, and a number: a global holding a task's id would make runs differ by where
# tasks happen to be allocated (the simulation replays runs and compares them).
_SKIPPED_IN_STEP: ContextVar[int] = ContextVar("trioproxy_skipped_yield_in_step", default=-1)


def may_skip_yield() -> bool:
    """True (and noted) if the caller may go on without the fairness yield: trio's run queue
    is empty and the current task skipped no yield since it last went through the
    scheduler. Call only from inside a trio task, just where the yield would be."""
    if _CONTEXT.runner.runq:
        return False
    step: int = _CONTEXT.task._schedule_points
    if _SKIPPED_IN_STEP.get() == step:
        return False
    _SKIPPED_IN_STEP.set(step)
    return True


def note_pass() -> None:
    """Count what the current task just did as a pass through the scheduler: it found, in
    one look, no other task runnable and nothing else ready (`_busypoll`'s task poll), as
    the pass would have. Its next fairness yield may be skipped again."""
    _SKIPPED_IN_STEP.set(-1)


def checkpoint_due() -> bool:
    """Whether ``trio.lowlevel.checkpoint_if_cancelled`` has more to do here than count a
    cancel point: the task is cancelled, or a KeyboardInterrupt is pending (for the main
    task: it then decides); the caller then awaits it. Else the point is counted, as it
    would be, and no coroutine is made: it runs before every read and write. (`_peer`'s
    hottest reads and writes hold a copy of these lines.)"""
    task = _CONTEXT.task
    if task._cancel_status.effectively_cancelled or _CONTEXT.runner.ki_pending:
        return True
    task._cancel_points += 1
    return False
