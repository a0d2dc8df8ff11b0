"""The sanctioned way for a hook to do blocking work: in a thread, with a bound on how many."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import trio

__all__ = ["BLOCKING_THREADS", "run_blocking"]

T = TypeVar("T")

# Threads all hooks of one process may keep busy at once; more calls wait their turn (under
# their hook's timeout). Small: blocking work in a proxy is the exception, and each thread
# holds memory and competes with the event loop for the GIL.
BLOCKING_THREADS = 4

# One limiter per trio run (a RunVar), made on first use: importing this module imports no trio.
_limiters: list[trio.lowlevel.RunVar[trio.CapacityLimiter]] = []


async def run_blocking(function: Callable[..., T], *args: object) -> T:
    """Run ``function(*args)`` in a worker thread and return its result, without blocking
    the event loop (a file read, a blocking client library, a CPU-heavy check)::

        data = await trioproxy.hooks.run_blocking(read_keys, "/etc/keys.json")

    At most `BLOCKING_THREADS` run at once. When the hook's timeout cancels the wait, the
    hook gives up at once; the thread runs to its end and its result is dropped.
    """
    import trio

    if not _limiters:
        _limiters.append(trio.lowlevel.RunVar("trioproxy_hook_threads"))
    try:
        limiter = _limiters[0].get()
    except LookupError:
        limiter = trio.CapacityLimiter(BLOCKING_THREADS)
        _limiters[0].set(limiter)
    return await trio.to_thread.run_sync(function, *args, limiter=limiter, abandon_on_cancel=True)
