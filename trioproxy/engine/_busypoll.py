"""Busy-polling before the event loop sleeps: the wake-up latency of a virtual machine.

When no task can run, trio sleeps in ``epoll_wait`` until a socket is ready. On a virtual
machine that sleep halts the virtual processor, and the wake-up costs tens of microseconds
(an interrupt through the hypervisor, and caches that others warmed meanwhile). With one
request at a time it comes twice a request: while the origin answers, and while the client
sends its next request. HAProxy's ``busy-polling`` option is the same remedy, unbounded
("a significant latency reduction (30 to 100 microseconds observed)"); here it is bounded
and adaptive, like KVM's halt polling: before sleeping, the loop polls trio's epoll for at
most the window `core._pollwindow` keeps, which long idle periods halve down to nothing.

Only when no task is runnable (trio then asks to sleep: ``timeout > 0``), so no task waits
for it; for at most ``tuning.busy_poll_us`` (and never past trio's next deadline: a timer
fires at most that late). Polling reads trio's epoll object (an internal, checked here);
without it (trio changed, or no epoll: macOS, Windows) the loop simply sleeps as before.

A task about to wait for its socket can poll first itself (`spin_until_readable`), in the
same window and under the same conditions, watching its socket and trio's epoll together.
If its socket is readable first, nothing else had anything to do: what a scheduler pass
would have found, so the task reads and goes on without the pass (the loop's round trip,
its epoll calls and the resumption of the task's frames: about a tenth of a request's
work, twice a request with one request at a time). If anything else is ready first (another
socket, a thread's or a signal's wake-up), or the window ends, the task waits as before.
"""

from __future__ import annotations

import select
import time

import trio

from ..core._pollwindow import next_poll_window
from ._fairness import RUN_CONTEXT, note_pass

__all__ = ["BusyPoll", "busy_poll", "spin_until_readable"]


class BusyPoll(trio.abc.Instrument):
    """Trio's ``before_io_wait``/``after_io_wait`` hooks: poll, sleep, then adapt the window.
    (Trio calls them once per scheduler pass, not per task step: under load, when passes
    serve many tasks each and never sleep, they cost almost nothing.)"""

    def __init__(self, limit_s: float, readable_fd: int) -> None:
        self.limit_s = limit_s
        self.window_s = 0.0
        self._poll = select.poll()
        self._poll.register(readable_fd, select.POLLIN)
        self._idle_from = 0.0
        # A task's poll (`spin`): trio's epoll and, while it polls, the task's socket.
        self._spin = select.poll()
        self._spin.register(readable_fd, select.POLLIN)
        self._spun_from = 0.0  # when a task's poll that found nothing began (0: none since)
        # The one task the current scheduler pass runs, if only one: trio takes a pass's
        # tasks off its run queue at once, so an empty queue does not say that no other
        # task of the pass is still to run; this does. (None: several, or none known.)
        self.sole_task: object = None
        # Trio's next deadline when it was last noted (`after_io_wait`): trio reads its clock
        # again after the instruments, and a deadline due by then wakes its task into the
        # same pass, behind `sole_task`'s back. A spin ends at it, so never while one may.
        self._pass_deadline = 0.0

    def before_io_wait(self, timeout: float) -> None:
        spun, self._spun_from = self._spun_from, 0.0
        if timeout <= 0:
            return  # a task is runnable, or a deadline due: no sleep to avoid
        if spun:  # a task polled for the window just now: sleep at once
            self._idle_from = spun
            return
        clock = time.perf_counter
        self._idle_from = start = clock()
        window = self.window_s
        if window > 0:
            poll, end = self._poll.poll, start + min(window, timeout)
            while not poll(0) and clock() < end:
                pass

    def after_io_wait(self, timeout: float) -> None:
        # (trio calls this after the wait's events woke their tasks, just before the
        # deadlines due wake theirs: none due, and one task woken, is a pass of one task.)
        runner = RUN_CONTEXT.runner
        runq = runner.runq
        if len(runq) != 1:
            self.sole_task = None  # (no spin this pass: `_pass_deadline` is not read)
        else:
            self._pass_deadline = deadline = runner.deadlines.next_deadline()
            self.sole_task = runq[0] if deadline > runner.clock.current_time() else None
        if timeout > 0:
            idle_s = time.perf_counter() - self._idle_from
            self.window_s = next_poll_window(self.window_s, self.limit_s, idle_s)

    def spin(self, fd: int) -> bool:
        """Poll ``fd`` and trio's epoll for at most the window, never past trio's next
        deadline: True if ``fd`` alone became readable (the window adapts to how long that
        took). Call only from the one task of a scheduler pass, with none runnable."""
        runner = RUN_CONTEXT.runner
        clock = time.perf_counter
        start = clock()
        deadline = min(runner.deadlines.next_deadline(), self._pass_deadline)
        left_s = min(self.window_s, deadline - runner.current_time())
        if left_s <= 0:
            return False
        end = start + left_s
        spin = self._spin
        spin.register(fd, select.POLLIN)
        try:
            poll = spin.poll
            while not (ready := poll(0)):
                if clock() >= end:
                    self._spun_from = start  # (the loop's own poll, before it sleeps: done)
                    return False
        finally:
            spin.unregister(fd)
        self.window_s = next_poll_window(self.window_s, self.limit_s, clock() - start)
        return len(ready) == 1 and ready[0][0] == fd


# The instrument `busy_poll` installed last, if it is still on (None: none, or removed).
_INSTALLED: list[BusyPoll | None] = [None]


def spin_until_readable(fd: int) -> bool:
    """Busy-poll socket ``fd`` for at most busy polling's window (`BusyPoll.spin`), if
    busy polling is on and the calling task is the only one its scheduler pass runs, with
    none runnable since (a task of another run never is): True if it became readable
    before anything else had an event. The caller then reads it at once: no other task could
    have run meanwhile, no other socket was ready, so the scheduler pass it skips would have
    found only this task to run (the fairness yields count it as one: `note_pass`)."""
    busy = _INSTALLED[0]
    if busy is None or busy.window_s <= 0:
        return False
    if busy.sole_task is not RUN_CONTEXT.task or RUN_CONTEXT.runner.runq:
        return False  # another task of this pass is still to run, or one became runnable
    if not busy.spin(fd):
        return False
    note_pass()
    return True


def _epoll_fd() -> int | None:
    """The file descriptor of trio's epoll object, readable when it has events; None if
    this trio has none, or not the deadlines `BusyPoll.spin` reads (another platform, or
    its internals changed)."""
    from trio._core import _run

    runner = _run.GLOBAL_RUN_CONTEXT.runner
    if not hasattr(getattr(runner, "deadlines", None), "next_deadline"):
        return None  # (`BusyPoll.spin` reads it)
    epoll = getattr(runner.io_manager, "_epoll", None)
    return epoll.fileno() if isinstance(epoll, select.epoll) else None


def busy_poll(installed: BusyPoll | None, limit_us: int) -> BusyPoll | None:
    """Busy-poll for up to ``limit_us`` before each sleep of the current trio run (0: never),
    from now on (at start, and at each reload): the instrument now installed, or None if busy
    polling is off or unavailable here. ``installed``: the one this returned last time."""
    if limit_us <= 0:
        if installed is not None:
            trio.lowlevel.remove_instrument(installed)
        _INSTALLED[0] = None
        return None
    if installed is not None:
        installed.limit_s = limit = limit_us / 1e6
        # A window grown under a larger limit would bound the next poll, and a task's
        # next spin (which no idle period adapts first), by the old limit.
        installed.window_s = min(installed.window_s, limit)
        _INSTALLED[0] = installed
        return installed
    fd = _epoll_fd()
    if fd is None:
        return None
    busy = BusyPoll(limit_us / 1e6, fd)
    trio.lowlevel.add_instrument(busy)
    _INSTALLED[0] = busy
    return busy
