from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from .support import echo_origin

# Every test runs under pytest-timeout's cap (pyproject: timeout), so a regression fails
# instead of hanging the suite.


@pytest.fixture
async def origin() -> AsyncIterator[tuple[str, int]]:
    """The hypercorn echo origin on loopback."""
    async with echo_origin() as address:
        yield address
