"""Name the hook that blocks the event loop: a trio Instrument timing each step of a task
that is running a hook, and a watchdog thread that speaks while the step is still running.

A deadline per call cannot catch ``time.sleep(1)`` in a hook: the loop is stopped, so no
deadline fires until the call returns. Measuring every step does: the task running a hook
carries `CURRENT_HOOK` in its context, the instrument notes when each step starts, and the
watchdog (an OS thread, so it runs while the loop is stuck) writes one diagnostics line
naming the hook and the request as soon as a step has run for `threshold_s`; the step's
whole length is counted when it ends. The instrument is installed only while some hook call
is in flight, so requests that trigger no hook pay nothing for it.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable

import trio

__all__ = ["CURRENT_HOOK", "BlockingWatch"]

log = logging.getLogger("trioproxy")

# (hook label, request ID) while a task runs a hook's code; None otherwise.
CURRENT_HOOK: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar(
    "trioproxy_current_hook", default=None
)

# A step longer than this is a blocking call (trio's own steps take microseconds; a hook's
# honest work well under a millisecond): 50 ms is what a client would notice.
DEFAULT_THRESHOLD_S = 0.05


class BlockingWatch(trio.abc.Instrument):
    """Counts and reports steps of hook code longer than ``threshold_s``.

    ``on_slow(label, request_id, seconds)`` is called on the event loop after each slow step
    (the hook's metrics). Use `calling` around every hook call; `run` is the watchdog.
    """

    def __init__(
        self,
        on_slow: Callable[[str, str, float], None],
        threshold_s: float = DEFAULT_THRESHOLD_S,
    ) -> None:
        self.threshold_s = threshold_s
        self._on_slow = on_slow
        self._in_flight = 0
        self._installed = False
        self._step: tuple[trio.lowlevel.Task, float] | None = None
        self._reported: trio.lowlevel.Task | None = None  # told already, for this step

    # --- around hook calls (on the event loop) ---

    def enter(self) -> None:
        self._in_flight += 1
        if not self._installed:
            trio.lowlevel.add_instrument(self)
            self._installed = True
        # The hook's first step is the rest of this one (up to its first await): time it
        # from here, since its before_task_step has passed.
        self._step = (trio.lowlevel.current_task(), time.perf_counter())

    def leave(self) -> None:
        # A hook that never awaited ends within the step it started in: account for it here
        # (its after_task_step may come after the instrument is gone).
        task = trio.lowlevel.current_task()
        self._account(task)
        self._step = (task, time.perf_counter())
        self._in_flight -= 1
        if not self._in_flight and self._installed:
            self._step = None
            trio.lowlevel.remove_instrument(self)
            self._installed = False

    # --- the Instrument ---

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._step = (task, time.perf_counter())

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        self._account(task)
        self._step = None

    def _account(self, task: trio.lowlevel.Task) -> None:
        step = self._step
        if step is None or step[0] is not task:
            return
        took = time.perf_counter() - step[1]
        if took >= self.threshold_s:
            hook = task.context.get(CURRENT_HOOK)
            if hook is not None:
                if self._reported is not task:
                    _report(hook, took, done=True)
                self._on_slow(hook[0], hook[1], took)
        self._reported = None

    # --- the watchdog ---

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Watch from a thread until cancelled (start it in the server's nursery). A plain
        thread, not trio.to_thread: it never wakes the event loop (not even to say it has
        ended), so a run on a virtual clock stays the same run however the machine is."""
        stop = threading.Event()
        thread = threading.Thread(
            target=self._watch, args=(stop,), name="trioproxy hook watch", daemon=True
        )
        thread.start()
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            stop.set()  # it ends within half a threshold; nothing waits for it

    def _watch(self, stop: threading.Event) -> None:
        while not stop.wait(self.threshold_s / 2):
            step = self._step
            if step is None:
                continue
            task, started = step
            took = time.perf_counter() - started
            if took >= self.threshold_s and self._reported is not task:
                hook = task.context.get(CURRENT_HOOK)
                if hook is not None and self._step is step:
                    self._reported = task
                    _report(hook, took, done=False)


def _report(hook: tuple[str, str], took: float, *, done: bool) -> None:
    label, request_id = hook
    state = "blocked" if done else "is blocking"
    log.warning(
        "hook %s %s the event loop for %.3fs (request %s): every connection waits;"
        " await instead, or use trioproxy.hooks.run_blocking",
        label,
        state,
        took,
        request_id,
    )
