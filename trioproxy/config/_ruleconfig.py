"""Load ``[[rules]]`` from trioproxy.toml into a `RuleSet`, reporting every problem found.

Called by `_config.settings_from_mapping`, so the proxy and ``trioproxy validate`` check rules
the same way, and each problem names its key path (``rules[2].match.path_regex``, counting
``[[rules]]`` tables from 1), what was found and what is allowed. Everything that can be
decided at load is: regular expressions compile, networks parse, statuses suit their action,
header names are tokens and values are sendable, templates name existing capture groups, and
no rule sits where an earlier one answers every request it would match.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..core._rulemodel import FaultAction, Rule, RuleSet
from ._describe import describe, quote
from ._faultconfig import FAULT_KEYS, parse_fault
from ._problems import Problem
from ._reachability import unreachable
from ._ruleactions import (
    _deny,
    _header_edits,
    _max_request_body_bytes,
    _rate_limit,
    _redirect,
    _respond,
    _rewrite,
)
from ._rulechecks import _RULE_FIELDS, _combination_problems
from ._rulematch import _MATCH_PARSERS, _match
from ._rulevalues import (
    _CONTROL,
    Parser,
    ProblemSink,
    _fields,
    _Invalid,
    _networks,
    _Sink,
    _string,
)

__all__ = ["parse_rules"]

LineOf = Callable[[str], int | None]


def parse_rules(
    value: Any,
    problem: ProblemSink,
    line_of: LineOf,
    *,
    hook_files: Mapping[str, bytes | str] | None = None,
    toml_file: str = "",
    file_problem: Callable[[Problem], None] | None = None,
) -> RuleSet:
    """The rules of a ``rules`` value (tomllib's list of tables); problems go to ``problem``,
    problems inside a hook file (read with the TOML: ``hook_files``) to ``file_problem``."""
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        found = describe(value)
        problem("rules", f"expected an array of tables ([[rules]] sections), found {found}")
        return RuleSet()
    rules = []
    parsers = _RULE_PARSERS
    if any("hook" in table for table in value):
        # Imported here: a configuration without hooks never loads the hook checker.
        from ._hookconfig import hook_parser

        report = file_problem or (lambda found: problem("", str(found)))
        parsers = {**parsers, "hook": hook_parser(hook_files or {}, toml_file, report)}
    for position, table in enumerate(value, start=1):
        rule = _parse_rule(position, table, problem, parsers)
        if rule is not None:
            rules.append(rule)
    for later, earlier in unreachable(rules):
        line = line_of(f"rules[{earlier.position}]")
        where = f"{earlier.label}" + (f" (line {line})" if line is not None else "")
        problem(
            f"rules[{later.position}]",
            f"never applies: {where} answers every request this rule matches;"
            " move this rule above it, or narrow that rule's match",
        )
    return RuleSet(tuple(rules))


def _parse_rule(
    position: int, table: dict[str, Any], problem: ProblemSink, parsers: dict[str, Parser]
) -> Rule | None:
    path = f"rules[{position}]"
    sink = _Sink(problem)
    values = _fields(table, path, parsers, sink, _NESTED_KEYS)
    if not sink.ok:
        return None
    # Action keys (hook; later faults) become the rule's actions, in the order written.
    actions = tuple(values.pop(key) for key in list(values) if key in _ACTION_KEYS)
    fields = {_RULE_FIELDS.get(k, k): v for k, v in values.items()}
    rule = Rule(position=position, actions=actions, **fields)
    for key, message in _combination_problems(rule):
        sink.report(f"{path}.{key}" if key else path, message)
    return rule if sink.ok else None


def _name(raw: Any, key_path: str, sink: _Sink) -> str:
    text = _string(raw, "a string")
    if _CONTROL.search(text) or len(text) > 100:
        raise _Invalid(f"expected a one-line name of at most 100 characters, found {quote(text)}")
    return text


def _fault_action(raw: Any, key_path: str, sink: _Sink) -> FaultAction | None:
    fault = parse_fault(raw, key_path, sink.report)
    return None if fault is None else FaultAction(fault)


_RULE_PARSERS: dict[str, Parser] = {
    "name": _name,
    "match": _match,
    "request_headers": _header_edits(request=True),
    "response_headers": _header_edits(request=False),
    "rewrite": _rewrite,
    "redirect": _redirect,
    "respond": _respond,
    "deny": _deny,
    "allow": _networks,
    "rate_limit": _rate_limit,
    "max_request_body_bytes": _max_request_body_bytes,
    "hook": lambda raw, key_path, sink: sink.report(key_path, "hook files were not read"),
    "fault": _fault_action,
}

# Keys parsed into `Rule.actions` (core._rulemodel.Action), which the engine carries out.
_ACTION_KEYS = frozenset({"hook", "fault"})

# Keys of the tables within a rule, for "did you mean" when one is written a level too high.
# ("status" is left out: it could belong to match, redirect, respond or deny.)
_NESTED_KEYS: dict[str, tuple[str, ...]] = {
    "match": tuple(key for key in _MATCH_PARSERS if key != "status"),
    "redirect": ("to",),
    "respond": ("headers", "body"),
    "rate_limit": ("rate", "burst", "max_clients"),
    "request_headers": ("set", "add", "remove"),
    "hook": ("file", "timeout_s", "on_error"),
    "fault": tuple(key for key in FAULT_KEYS if key not in ("status", "body", "name")),
}
