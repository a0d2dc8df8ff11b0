"""Hypothesis profiles for every property test (tests/ and fuzz/).

``ci`` (the default) is derandomized: the same examples every run, so CI is never red by
the luck of the draw and a failure reproduces exactly; it keeps fuzz/ around 20 s. ``deep``
(50 times the examples, random, about 15 minutes) is for a long run by hand or on a
schedule::

    HYPOTHESIS_PROFILE=deep .venv/bin/pytest fuzz -p no:cacheprovider
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")

for name, examples, derandomize in (("ci", 100, True), ("deep", 5000, False)):
    settings.register_profile(
        name,
        max_examples=examples,
        derandomize=derandomize,
        database=None if derandomize else settings.default.database,
        deadline=None,  # socket round trips vary; the harness bounds each exchange instead
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        print_blob=True,
    )
settings.load_profile(PROFILE)
