"""Helpers for tests that put trioproxy in front of an app: real sockets, real servers.

    from trioproxy.testing import proxy_in_front_of

    async def test_my_app_behind_the_proxy():
        async with proxy_in_front_of(my_asgi_app) as proxy:
            ...  # talk HTTP to proxy.url; proxy.access_log holds the parsed log lines

The origin is the ASGI app served by hypercorn's trio worker on an ephemeral loopback port.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

from ..app._embed import RunningProxy, running

try:
    from ..app._origin import ASGIApp, echo_app, handle_lifespan, origin
except ModuleNotFoundError as exc:  # hypercorn serves the origin: not a runtime dependency
    needs = (exc.name or "hypercorn").partition(".")[0]
    raise ModuleNotFoundError(
        f"trioproxy.testing needs {needs}: pip install 'trioproxy[testing]'", name=needs
    ) from None
from ..config._settings import Settings

__all__ = [
    "ASGIApp",
    "RunningProxy",
    "echo_app",
    "handle_lifespan",
    "origin",
    "proxy_in_front_of",
]


@asynccontextmanager
async def proxy_in_front_of(
    app: ASGIApp, settings: Settings | None = None
) -> AsyncIterator[RunningProxy]:
    """Serve ``app`` as the origin and a proxy in front of it, both on loopback, for the
    block; the proxy's access-log lines are captured on ``proxy.access_log``."""
    async with origin(app) as url:
        parts = urlsplit(url)
        upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        async with running(upstream, settings, capture_access_log=True) as proxy:
            yield proxy
