"""Running a side task beside the main one, where the first failure decides.

Used where an exchange waits for one thing while watching another: a response relayed while
the request body still uploads, the upstream awaited while the client may leave, the
upstream read while the client takes bytes already queued for it. Exceptions come out bare
(never as an ExceptionGroup), so the callers keep the proxy's error vocabulary.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

T = TypeVar("T")


async def with_side_task(
    main: Callable[[], Awaitable[T]], side: Callable[[], Awaitable[object]]
) -> T:
    """``main``'s result, while ``side`` runs beside it until ``main`` ends.

    ``side`` returning early simply ends it; ``side`` raising cancels ``main`` and its
    exception is raised here. When ``main`` ends, ``side`` is cancelled.
    """
    failure: list[Exception] = []
    result: list[T] = []
    async with trio.open_nursery() as nursery:

        async def run_side() -> None:
            try:
                await side()
            except Exception as exc:
                failure.append(exc)
                nursery.cancel_scope.cancel()

        nursery.start_soon(run_side)
        try:
            result.append(await main())
        except Exception as exc:
            failure.append(exc)
        nursery.cancel_scope.cancel()
    if failure:
        raise failure[0]
    return result[0]
