"""Hypothesis profiles for the fuzz properties.

``ci`` (the default) keeps the whole directory well under two minutes on two cores (about
20 s); ``deep`` (50 times the examples, about 15 minutes) is for a long run by hand or on a
schedule, and lifts pytest-timeout's per-test cap for this directory to match::

    HYPOTHESIS_PROFILE=deep .venv/bin/pytest fuzz -p no:cacheprovider

A test may scale its example count from the profile's (``settings().max_examples``), so the
cheap pure-function properties get more examples than the ones that go through sockets.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")

for name, examples in (("ci", 100), ("deep", 5000)):
    settings.register_profile(
        name,
        max_examples=examples,
        deadline=None,  # socket round trips vary; the harness bounds each exchange instead
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        print_blob=True,
    )
settings.load_profile(PROFILE)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if PROFILE == "deep":  # the suite-wide 120 s cap is for the ci profile
        for item in items:
            if "fuzz" in item.nodeid.split("/", 1)[0]:
                item.add_marker(pytest.mark.timeout(1800))
