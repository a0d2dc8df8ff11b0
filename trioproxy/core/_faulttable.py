"""Faults added while the proxy runs (``async with proxy.fault(...)``, ``POST /faults``): a
table of named faults, each with the requests it is for, kept across reloads (pure).

A rule's ``fault`` lives and dies with the configuration; these live until removed. The engine
asks the table, after the rules, which of its faults a request selects (`FaultTable.select`):
an empty table answers at once, so a proxy without runtime faults pays one attribute test
(``has_faults``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from ._faults import Fault, FaultKind, FaultState, Selection
from ._requestview import RequestView
from ._rulemodel import Match

__all__ = ["MAX_RUNTIME_FAULTS", "FaultTable", "RuntimeFault", "fault_json"]

_ANY = Match()

# Every request is tested against every runtime fault, so the table's size bounds per-request
# work; a test suite that needs more at once is leaking them (each `proxy.fault` block removes
# its own).
MAX_RUNTIME_FAULTS = 64


@dataclass(slots=True)
class RuntimeFault:
    name: str
    match: Match
    state: FaultState
    # The match as it was given (JSON or keyword arguments), to show it back in GET /faults.
    match_json: Mapping[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            **fault_json(self.state.fault),
            "name": self.name,
            "match": dict(self.match_json),
            "seen": self.state.seen,
            "applied": self.state.applied,
        }


class FaultTable:
    """Named runtime faults in the order they were added. Not thread-safe (one event loop)."""

    __slots__ = ("_faults", "has_faults")

    def __init__(self) -> None:
        self._faults: dict[str, RuntimeFault] = {}
        # Kept with the table: every request reads it (an attribute, not a `__bool__` call).
        self.has_faults = False

    def __bool__(self) -> bool:
        return bool(self._faults)

    def __iter__(self) -> Iterator[RuntimeFault]:
        return iter(tuple(self._faults.values()))

    def __contains__(self, name: object) -> bool:
        return name in self._faults

    def add(
        self, fault: Fault, match: Match = _ANY, match_json: Mapping[str, Any] | None = None
    ) -> RuntimeFault:
        """Add ``fault`` under its name (its label when it has none); `KeyError` if a fault of
        that name is there already (remove it first: two of a name could not be told apart) or
        the table holds `MAX_RUNTIME_FAULTS` already."""
        name = fault.name or fault.label
        if name in self._faults:
            raise KeyError(f"a fault named {name!r} is active already; remove it first")
        if len(self._faults) >= MAX_RUNTIME_FAULTS:
            raise KeyError(
                f"{MAX_RUNTIME_FAULTS} runtime faults are active already (the most there can "
                "be); remove one first"
            )
        added = RuntimeFault(name, match, FaultState(fault), dict(match_json or {}))
        self._faults[name] = added
        self.has_faults = True
        return added

    def remove(self, name: str) -> RuntimeFault | None:
        removed = self._faults.pop(name, None)
        self.has_faults = bool(self._faults)
        return removed

    def select(self, view: RequestView) -> tuple[FaultState, ...]:
        """The faults that apply to this request, in the order they were added (each matching
        fault counts the request, selected or not)."""
        if not self._faults:
            return ()
        return tuple(
            f.state for f in tuple(self._faults.values()) if f.match.test(view) and f.state.select()
        )

    def as_json(self) -> list[dict[str, Any]]:
        return [f.as_json() for f in self._faults.values()]


# Keys that say what a fault of a kind does, shown even at their defaults.
_ALWAYS_SHOWN = {
    FaultKind.ANSWER: ("status",),
    FaultKind.INFORMATIONAL: ("status",),
    FaultKind.LATENCY: ("delay_s",),
    FaultKind.BANDWIDTH: ("bytes_per_s",),
    FaultKind.TRUNCATE: ("after_bytes",),
    FaultKind.MALFORMED: ("garbage",),
}


def fault_json(fault: Fault) -> dict[str, Any]:
    """A fault as the JSON ``POST /faults`` takes (and a rule's ``fault`` table holds): its
    kind, direction and point always, every other key only where it is not the default."""
    out: dict[str, Any] = {
        "kind": fault.kind.value,
        "direction": fault.direction.value,
        "at": fault.point.value,
    }
    for f in fields(Fault):
        if f.name in ("kind", "direction", "at", "selection", "name"):
            continue
        value = getattr(fault, f.name)
        if value != f.default or f.name in _ALWAYS_SHOWN.get(fault.kind, ()):
            out[f.name] = _plain(value)
    for f in fields(Selection):
        value = getattr(fault.selection, f.name)
        if value != f.default:
            out[f.name] = value
    if fault.name:
        out["name"] = fault.name
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return getattr(value, "value", value)  # an enum's value
