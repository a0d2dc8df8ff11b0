"""Parse a rule's ``fault`` table into a `Fault`, every problem named with its key path.

    [[rules]]
    match.path_prefix = "/api/"
    fault = { kind = "reset", at = "body", after_bytes = 1000, first = 2 }

The same parser reads faults given to the admin listener as JSON (`parse_fault`), so a harness
in any language is told exactly what the TOML would be told.
"""

from __future__ import annotations

from typing import Any

from ..core._faults import Direction, Distribution, Fault, FaultKind, Point, Selection
from ..core._rulemodel import Match
from ._describe import describe
from ._rulematch import _match
from ._rulevalues import Parser, ProblemSink, _fields, _integer, _Invalid, _Sink, _text_body

__all__ = ["FAULT_KEYS", "parse_fault", "parse_runtime_fault"]

_MAX_DELAY_S = 86_400.0  # a day: a hang longer than any test's patience is a hang


def _choice(enum_type: type[Any], what: str) -> Parser:
    names = [member.value for member in enum_type]

    def parse(raw: Any, key_path: str, sink: _Sink) -> Any:
        if raw not in names:
            raise _Invalid(f"expected {what}: one of {', '.join(names)}; found {describe(raw)}")
        return enum_type(raw)

    return parse


def _seconds(raw: Any, key_path: str, sink: _Sink) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 <= raw <= _MAX_DELAY_S:
        raise _Invalid(f"expected seconds from 0 to {_MAX_DELAY_S:g}, found {describe(raw)}")
    return float(raw)


def _count(low: int, what: str) -> Parser:
    return lambda raw, key_path, sink: _integer(raw, low, 2**53, what)


def _probability(raw: Any, key_path: str, sink: _Sink) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 <= raw <= 1:
        raise _Invalid(f"expected a probability from 0 to 1, found {describe(raw)}")
    return float(raw)


def _garbage(raw: Any, key_path: str, sink: _Sink) -> bytes:
    if not isinstance(raw, str) or not raw:
        raise _Invalid(f"expected the bytes to send as a non-empty string, found {describe(raw)}")
    try:
        return raw.encode("latin-1")
    except UnicodeEncodeError:
        raise _Invalid("expected characters from U+0000 to U+00FF (one byte each)") from None


def _name(raw: Any, key_path: str, sink: _Sink) -> str:
    if not isinstance(raw, str) or not raw.isprintable() or len(raw) > 100:
        raise _Invalid(f"expected a one-line name of at most 100 characters, found {describe(raw)}")
    return raw


_PARSERS: dict[str, Parser] = {
    "kind": _choice(FaultKind, "a fault kind"),
    "direction": _choice(Direction, "the peer that sees the fault"),
    "at": _choice(Point, "where the fault acts"),
    "delay_s": _seconds,
    "jitter_s": _seconds,
    "distribution": _choice(Distribution, "a distribution"),
    "bytes_per_s": _count(1, "bytes per second, at least 1"),
    "after_bytes": _count(0, "a number of body bytes, at least 0"),
    "status": lambda raw, key_path, sink: _integer(raw, 100, 599, "a status from 100 to 599"),
    "retry_after_s": _count(0, "whole seconds for Retry-After, at least 0"),
    "body": lambda raw, key_path, sink: _text_body(raw),
    "garbage": _garbage,
    "first": _count(1, "a number of requests, at least 1"),
    "every": _count(1, "a number of requests, at least 1"),
    "probability": _probability,
    "seed": _count(0, "a whole number, at least 0"),
    "name": _name,
}
FAULT_KEYS = tuple(_PARSERS)
_SELECTION_KEYS = ("first", "every", "probability", "seed")


def parse_fault(raw: Any, key_path: str, problem: ProblemSink) -> Fault | None:
    """The fault a table (or a JSON object) describes; None after reporting its problems."""
    sink = _Sink(problem)
    try:
        fault = _fault(raw, key_path, sink)
    except _Invalid as exc:
        sink.report(key_path, str(exc))
        return None
    return fault if sink.ok else None


def _fault(raw: Any, key_path: str, sink: _Sink) -> Fault | None:
    values = _fields(raw, key_path, _PARSERS, sink)
    if "kind" not in raw:
        kinds = ", ".join(kind.value for kind in FaultKind)
        sink.report(f"{key_path}.kind", f"missing: what the fault does, one of {kinds}")
    if not sink.ok:
        return None
    selection = Selection(**{key: values.pop(key) for key in _SELECTION_KEYS if key in values})
    fault = Fault(selection=selection, **values)
    for key, message in fault.problems():
        sink.report(f"{key_path}.{key}", message)
    return fault if sink.ok else None


def parse_runtime_fault(
    raw: Any, problem: ProblemSink, key_path: str = "fault"
) -> tuple[Fault, Match, dict[str, Any]] | None:
    """A fault added while the proxy runs (``POST /faults``, ``proxy.fault``): a fault table
    as a rule's, with the rule's ``match`` table beside its keys. The fault, its match, and
    the match as given; None after reporting every problem, named from ``key_path``."""
    sink = _Sink(problem)
    if not isinstance(raw, dict):
        sink.report(key_path, f"expected a table (a JSON object), found {describe(raw)}")
        return None
    keys = dict(raw)
    match_raw = keys.pop("match", {})
    match = Match()
    try:
        match = _match(match_raw, f"{key_path}.match", sink)
    except _Invalid as exc:
        sink.report(f"{key_path}.match", str(exc))
    if match.statuses is not None:
        sink.report(f"{key_path}.match.status", "a fault is chosen by its request: no status yet")
    fault = parse_fault(keys, key_path, sink.report)
    if fault is None or not sink.ok:
        return None
    return fault, match, dict(match_raw)
