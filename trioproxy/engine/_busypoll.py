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
"""

from __future__ import annotations

import select
import time

import trio

from ..core._pollwindow import next_poll_window

__all__ = ["BusyPoll", "busy_poll"]


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

    def before_io_wait(self, timeout: float) -> None:
        if timeout <= 0:
            return  # a task is runnable, or a deadline due: no sleep to avoid
        clock = time.perf_counter
        self._idle_from = start = clock()
        window = self.window_s
        if window > 0:
            poll, end = self._poll.poll, start + min(window, timeout)
            while not poll(0) and clock() < end:
                pass

    def after_io_wait(self, timeout: float) -> None:
        if timeout > 0:
            idle_s = time.perf_counter() - self._idle_from
            self.window_s = next_poll_window(self.window_s, self.limit_s, idle_s)


def _epoll_fd() -> int | None:
    """The file descriptor of trio's epoll object, readable when it has events; None if
    this trio has none (another platform, or its internals changed)."""
    from trio._core import _run

    io_manager = _run.GLOBAL_RUN_CONTEXT.runner.io_manager
    epoll = getattr(io_manager, "_epoll", None)
    return epoll.fileno() if isinstance(epoll, select.epoll) else None


def busy_poll(installed: BusyPoll | None, limit_us: int) -> BusyPoll | None:
    """Busy-poll for up to ``limit_us`` before each sleep of the current trio run (0: never),
    from now on (at start, and at each reload): the instrument now installed, or None if busy
    polling is off or unavailable here. ``installed``: the one this returned last time."""
    if limit_us <= 0:
        if installed is not None:
            trio.lowlevel.remove_instrument(installed)
        return None
    if installed is not None:
        installed.limit_s = limit_us / 1e6
        return installed
    fd = _epoll_fd()
    if fd is None:
        return None
    busy = BusyPoll(limit_us / 1e6, fd)
    trio.lowlevel.add_instrument(busy)
    return busy
