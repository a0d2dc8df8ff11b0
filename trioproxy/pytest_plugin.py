"""pytest fixtures for pytest-trio users (registered through the ``pytest11`` entry point).

Override ``trioproxy_app`` (the ASGI app to put behind the proxy; default: an echo app) and
``trioproxy_settings`` in your conftest, then ask for ``proxied_app``::

    async def test_served_through_the_proxy(proxied_app):
        ...  # proxied_app.url, proxied_app.access_log
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ._embed import RunningProxy
from ._origin import ASGIApp, echo_app
from ._settings import Settings
from .testing import proxy_in_front_of


@pytest.fixture
def trioproxy_app() -> ASGIApp:
    """The origin app behind ``proxied_app``; override it to test your own."""
    return echo_app


@pytest.fixture
def trioproxy_settings() -> Settings:
    """The proxy's settings for ``proxied_app``; override to change timeouts, limits, ..."""
    return Settings()


@pytest.fixture
async def proxied_app(
    trioproxy_app: ASGIApp, trioproxy_settings: Settings
) -> AsyncIterator[RunningProxy]:
    """trioproxy in front of ``trioproxy_app``, both on loopback, for one test."""
    async with proxy_in_front_of(trioproxy_app, trioproxy_settings) as proxy:
        yield proxy
