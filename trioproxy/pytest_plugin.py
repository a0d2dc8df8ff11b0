"""pytest fixtures for pytest-trio users (registered through the ``pytest11`` entry point).

Override ``trioproxy_app`` (the ASGI app to put behind the proxy; default: an echo app) and
``trioproxy_settings`` in your conftest, then ask for ``proxied_app``::

    async def test_served_through_the_proxy(proxied_app):
        ...  # proxied_app.url, proxied_app.access_log, proxied_app.journal, .fault(...)

or, in memory and virtual time (override ``trioproxy_world_app``), ``trioproxy_world``::

    async def test_my_client(trioproxy_world, autojump_clock):
        async with trioproxy_world.fault(kind="reset", first=1):
            async with trioproxy_world.httpx_client() as client:
                ...

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
    from .testing import MemoryWorld

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


@pytest.fixture
def trioproxy_world_app() -> ASGIApp | None:
    """The origin of ``trioproxy_world``: None for a JSON echo; override with your app."""
    return None


@pytest.fixture
async def trioproxy_world(
    trioproxy_world_app: ASGIApp | None, trioproxy_settings: Settings
) -> AsyncIterator[MemoryWorld]:
    """trioproxy in front of ``trioproxy_world_app`` on a memory network, the scheduler
    seeded: ``trioproxy.testing.memory_world``. Ask for pytest-trio's ``autojump_clock`` in
    the test too (pytest-trio takes the clock from the test's own arguments; without it the
    world says so). Needs no hypercorn; leaving checks that nothing was left behind."""
    from .testing import memory_world

    async with memory_world(trioproxy_world_app, settings=trioproxy_settings) as world:
        yield world
