"""Helpers for tests that put trioproxy in front of an app.

In memory, on virtual time (nothing but trio and h11 needed; httpx for `httpx_client`)::

    from trioproxy.testing import ExchangeMatch, memory_world

    async def test_my_client(autojump_clock):
        async with memory_world(my_asgi_app) as world:
            async with world.fault(kind="reset", at="after_head", first=1):
                async with world.httpx_client() as client:
                    ...
            world.journal.verify(ExchangeMatch(path="/api"), times=2)

On real sockets, the origin served by hypercorn (the ``testing`` extra)::

    from trioproxy.testing import proxy_in_front_of

    async def test_my_app_behind_the_proxy():
        async with proxy_in_front_of(my_asgi_app) as proxy:
            ...  # talk HTTP to proxy.url; proxy.access_log holds the parsed log lines
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..app._embed import RunningProxy, running
from ..config._settings import Settings
from ..core._faults import Direction, Distribution, Fault, FaultKind, Point, Selection
from ..core._journal import Entry, ExchangeMatch, VerificationError
from ._virtual import run, seed_scheduler
from ._world import LeakError, MemoryStream, MemoryWorld, memory_world

if TYPE_CHECKING:
    from ..app._origin import ASGIApp, echo_app, handle_lifespan, origin

__all__ = [
    "ASGIApp",
    "Direction",
    "Distribution",
    "Entry",
    "ExchangeMatch",
    "Fault",
    "FaultKind",
    "LeakError",
    "MemoryStream",
    "MemoryWorld",
    "Point",
    "RunningProxy",
    "Selection",
    "VerificationError",
    "echo_app",
    "handle_lifespan",
    "memory_world",
    "origin",
    "proxy_in_front_of",
    "run",
    "seed_scheduler",
]

_HYPERCORN_NAMES = ("ASGIApp", "echo_app", "handle_lifespan", "origin")


def __getattr__(name: str) -> Any:
    # Served by hypercorn, which is not a runtime dependency: imported when first asked for.
    if name not in _HYPERCORN_NAMES:
        raise AttributeError(f"module 'trioproxy.testing' has no attribute {name!r}")
    return getattr(_origin_module(), name)


def _origin_module() -> Any:
    try:
        from ..app import _origin
    except ModuleNotFoundError as exc:
        needs = (exc.name or "hypercorn").partition(".")[0]
        raise ModuleNotFoundError(
            f"trioproxy.testing needs {needs}: pip install 'trioproxy[testing]'", name=needs
        ) from None
    return _origin


@asynccontextmanager
async def proxy_in_front_of(
    app: ASGIApp, settings: Settings | None = None, *, journal_size: int = 1000
) -> AsyncIterator[RunningProxy]:
    """Serve ``app`` as the origin and a proxy in front of it, both on loopback, for the
    block; the proxy's access-log lines are captured on ``proxy.access_log``, its last
    exchanges on ``proxy.journal``."""
    async with _origin_module().origin(app) as url:
        parts = urlsplit(url)
        upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        async with running(
            upstream, settings, capture_access_log=True, journal_size=journal_size
        ) as proxy:
            yield proxy
