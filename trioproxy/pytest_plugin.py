"""pytest fixtures for pytest-trio users (registered through the ``pytest11`` entry point).

Override ``trioproxy_app`` (the ASGI app to put behind the proxy; default: an echo app) and
``trioproxy_settings`` in your conftest, then ask for ``proxied_app``::

    async def test_served_through_the_proxy(proxied_app):
        ...  # proxied_app.url, proxied_app.access_log

pytest loads this module in every session of every environment that has trioproxy installed,
so it imports nothing at start-up beyond pytest: trio, the proxy and hypercorn are imported by
the fixtures when a test asks for them. They need the ``testing`` extra (hypercorn and
pytest-trio); without it, a test that asks fails with one line saying what to install.
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .app._embed import RunningProxy
    from .app._origin import ASGIApp
    from .config._settings import Settings

# What the fixtures need beyond trioproxy's own dependencies: the import name, and the package.
_TESTING_EXTRA = (("hypercorn", "hypercorn"), ("pytest_trio", "pytest-trio"))


@pytest.fixture
def _trioproxy_testing_extra() -> None:
    """Fail with one line when the ``testing`` extra is missing (set up before the others)."""
    missing = [name for module, name in _TESTING_EXTRA if importlib.util.find_spec(module) is None]
    if missing:
        pytest.fail(
            f"trioproxy's pytest fixtures need {' and '.join(missing)}: "
            "pip install 'trioproxy[testing]'",
            pytrace=False,
        )


@pytest.fixture
def trioproxy_app(_trioproxy_testing_extra: None) -> ASGIApp:
    """The origin app behind ``proxied_app``; override it to test your own."""
    from .app._origin import echo_app

    return echo_app


@pytest.fixture
def trioproxy_settings() -> Settings:
    """The proxy's settings for ``proxied_app``; override to change timeouts, limits, ..."""
    from .config._settings import Settings

    return Settings()


@pytest.fixture
async def proxied_app(
    _trioproxy_testing_extra: None, trioproxy_app: ASGIApp, trioproxy_settings: Settings
) -> AsyncIterator[RunningProxy]:
    """trioproxy in front of ``trioproxy_app``, both on loopback, for one test."""
    from .testing import proxy_in_front_of

    async with proxy_in_front_of(trioproxy_app, trioproxy_settings) as proxy:
        yield proxy
