"""The flags every request reads instead of calling ``__bool__``: whether any rule is there
(`RuleEngine.has_rules`), whether any runtime fault is (`FaultTable.has_faults`)."""

from __future__ import annotations

from trioproxy.core._faults import Fault, FaultKind
from trioproxy.core._faulttable import FaultTable

from .rules_support import engine


def test_has_rules_says_whether_the_engine_has_any() -> None:
    assert not engine("").has_rules
    assert engine('[[rules]]\nmatch.path = "/no"\ndeny = { status = 403 }\n').has_rules


def test_has_faults_follows_the_table_as_faults_come_and_go() -> None:
    table = FaultTable()
    assert not table.has_faults
    table.add(Fault(FaultKind.HANG, name="one"))
    table.add(Fault(FaultKind.HANG, name="two"))
    assert table.has_faults
    table.remove("one")
    assert table.has_faults  # one is left
    table.remove("two")
    assert not table.has_faults
    table.remove("two")  # (a name not there)
    assert not table.has_faults
