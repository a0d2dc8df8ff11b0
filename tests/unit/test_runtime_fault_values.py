"""A runtime fault's keys come from JSON (``POST /faults``) or Python (``proxy.fault``), not
only TOML: a value of a type TOML lacks is named as what it is, never as a TOML date-time."""

from __future__ import annotations

from typing import Any

import pytest

from trioproxy.config._faultconfig import parse_runtime_fault
from trioproxy.testing import FaultKind


@pytest.mark.parametrize(
    ("value", "shown"),
    [(None, "found null"), (FaultKind.HANG, "found a Python FaultKind FaultKind.HANG")],
)
def test_a_non_toml_value_is_named_as_what_it_is(value: Any, shown: str) -> None:
    problems: list[tuple[str, str]] = []
    found = parse_runtime_fault(
        {"kind": value}, lambda path, message: problems.append((path, message))
    )
    assert found is None
    ((path, message),) = problems
    assert path == "fault.kind" and message.endswith(shown), message
    assert "date-time" not in message
