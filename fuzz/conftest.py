"""The deep profile (see the repository's conftest.py) lifts pytest-timeout's per-test cap
for this directory to match its length."""

from __future__ import annotations

import os

import pytest

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if PROFILE == "deep":  # the suite-wide 120 s cap is for the ci profile
        for item in items:
            if "fuzz" in item.nodeid.split("/", 1)[0]:
                item.add_marker(pytest.mark.timeout(1800))
