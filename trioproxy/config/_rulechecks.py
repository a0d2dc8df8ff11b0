"""Check a parsed rule as a whole: actions that cannot go together, references to missing groups."""

from __future__ import annotations

import re
from collections.abc import Iterator

from ..core._rulemodel import FaultAction, HookAction, Rule, Template

_RULE_FIELDS = {"request_headers": "request_ops", "response_headers": "response_ops"}


# --- A rule as a whole -------------------------------------------------------------------------


def _combination_problems(rule: Rule) -> Iterator[tuple[str, str]]:
    """(key below the rule, message) for actions that cannot go together or cannot work."""
    answers = [
        key
        for key, given in (("redirect", rule.redirect), ("respond", rule.respond))
        if given is not None
    ]
    if rule.deny is not None and rule.allow is None:
        answers.append("deny")
    edits = [
        key for key in _EDIT_KEYS if getattr(rule, _RULE_FIELDS.get(key, key)) not in (None, ())
    ]
    gates = [key for key in ("allow", "rate_limit") if getattr(rule, key) is not None]
    if not (answers or edits or gates or rule.actions):
        yield "", f"has no action; give one of {', '.join(_ACTION_KEYS)}"
    if len(answers) > 1:
        yield answers[1], f"a rule gives one answer; found both {answers[0]} and {answers[1]}"
    if answers and any(isinstance(action, HookAction) for action in rule.actions):
        yield "hook", f"a hook answers in code; it cannot go with {answers[0]} in one rule"
    if rule.allow is not None and answers:
        message = "allow answers everyone outside the list with deny, and cannot go with"
        yield "allow", f"{message} {answers[0]}"
    if answers and any(isinstance(action, FaultAction) for action in rule.actions):
        yield "fault", f"never applies: this rule answers every request it matches ({answers[0]})"
    for key in ("request_headers", "rewrite", "max_request_body_bytes"):
        if key in edits and answers:
            yield key, f"has no effect: this rule answers every request it matches ({answers[0]})"
    if rule.match.statuses is not None:
        acts = [action.kind for action in rule.actions]
        others = [k for k in (*answers, *edits, *gates, *acts) if k != "response_headers"]
        if others or "response_headers" not in edits:
            found = f"found with {others[0]}" if others else "found without response_headers"
            yield "match.status", f"only response_headers can depend on the status; {found}"
    yield from _reference_problems(rule)


_EDIT_KEYS = ("request_headers", "response_headers", "rewrite", "max_request_body_bytes")
_ACTION_KEYS = (
    "request_headers",
    "response_headers",
    "rewrite",
    "redirect",
    "respond",
    "deny",
    "allow",
    "rate_limit",
    "max_request_body_bytes",
    "hook",
    "fault",
)


def _reference_problems(rule: Rule) -> Iterator[tuple[str, str]]:
    pattern = rule.match.path_regex
    for key, template in (("rewrite", rule.rewrite), ("redirect.to", _location(rule))):
        if template is None:
            continue
        for group in template.groups:
            shown = f"${group}" if isinstance(group, int) and group < 10 else f"${{{group}}}"
            if pattern is None:
                yield key, f"{shown} refers to a capture group, but match.path_regex is not set"
            elif not _has_group(pattern, group):
                yield key, f"{shown}: match.path_regex has no such group ({_groups(pattern)})"


def _location(rule: Rule) -> Template | None:
    return rule.redirect.location if rule.redirect is not None else None


def _has_group(pattern: re.Pattern[bytes], group: int | str) -> bool:
    if isinstance(group, int):
        return 0 <= group <= pattern.groups
    return group in pattern.groupindex


def _groups(pattern: re.Pattern[bytes]) -> str:
    names = "".join(f", ${{{name}}}" for name in pattern.groupindex)
    return f"groups: $0 to ${pattern.groups}{names}" if pattern.groups else "it has none"
