"""The rules engine: match a request against ``[[rules]]``, decide what to do with it.

Pure: no I/O and no trio. The engine builds a `RequestView` from a request head, asks
`RuleEngine.evaluate` for a `Decision`, and carries it out: answer at once, or forward with
the rewritten target and edited request headers, then edit the response headers. Rules that
test nothing (a hook or a header edit on every request) decide from the target alone
(`RuleEngine.constant`), and no view is made unless something else reads it.

Semantics, in one place:

- Rules are tried in file order; a rule matches when every condition it gives holds.
- Header edits and rewrites of every matching rule accumulate in order (the first matching
  rewrite wins: put specific rules before general ones, as for answers). So does a
  ``max_request_body_bytes``: the first matching rule's replaces the global limit.
- The first answer ends evaluation: a redirect, a deny (including a client outside an
  ``allow`` list), a static response, or a 429 from an exhausted rate limit. Response-header
  edits of the rules tried so far, and of the answering rule, apply to that answer.
- Conditions always see the request as received (a rewrite does not feed later rules), with
  the path normalised the way origins read it (`normalize_path`): ``/a/%2e%2e//admin`` is
  ``/admin`` to every rule, so a deny on ``/admin`` cannot be walked around.
- The platform's health checks (paths under ``/.well-known/section-io/aee-hc/``) and
  asterisk-form requests (``OPTIONS *``) always pass untouched.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Final, NamedTuple, Protocol

from ._answers import FORBIDDEN, _too_many_requests, text_response
from ._faults import Fault, FaultState
from ._headers import RequestPlan
from ._ratelimit import TokenBuckets, retry_after_s
from ._requestview import RequestView, client_address, request_view
from ._rulemodel import (
    _ANY,
    Action,
    FaultAction,
    HeaderOp,
    Headers,
    RateLimit,
    Redirect,
    Response,
    ResponseEdit,
    Rule,
    RuleSet,
    _query_part,
    apply_field_ops,
    apply_header_ops,
)

__all__ = [
    "HEALTH_CHECK_PREFIX",
    "PASS",
    "Buckets",
    "BucketsFactory",
    "Decision",
    "RuleEngine",
    "Triggered",
    "apply_decision",
    "local_buckets",
]

# The platform probes every proxy in the chain here; a rule must never answer for the origin.
HEALTH_CHECK_PREFIX: Final = b"/.well-known/section-io/aee-hc/"
# `RuleEngine.constant` leaves every target that may normalise to this prefix to `evaluate`,
# which passes it: one with a "/." (the prefix's own start) or an escape.
assert HEALTH_CHECK_PREFIX.startswith(b"/.")


class Triggered(NamedTuple):
    """A rule action a request triggered, with the rule's path-regex match (for captures)."""

    action: Action
    captures: re.Match[bytes] | None
    rule: str  # the rule's label, for diagnostics
    fault: FaultState | None = None  # a fault action's state, when the fault chose this request


class Decision:
    """What to do with one request (read-only: nothing assigns to it once made).

    ``response`` set: send it and do not forward. Otherwise forward, to ``target`` when it is
    set (a rewrite; the query string is kept), with ``request_headers()`` applied to the
    headers being forwarded, and pass the upstream's response through `response_headers`.
    (A class with slots, not a named tuple: a request that meets a rule reads several of its
    fields, and a slot is read several times faster than a named tuple's field.)
    """

    __slots__ = (
        "actions",
        "max_request_body_bytes",
        "request_ops",
        "response",
        "response_edits",
        "rule",
        "target",
    )

    def __init__(
        self,
        response: Response | None = None,
        target: bytes | None = None,
        request_ops: tuple[HeaderOp, ...] = (),
        response_edits: tuple[ResponseEdit, ...] = (),
        rule: str = "",
        max_request_body_bytes: int | None = None,
        actions: tuple[Triggered, ...] = (),
    ) -> None:
        self.response = response
        self.target = target
        self.request_ops = request_ops
        self.response_edits = response_edits
        self.rule = rule  # the rule that answered, for the diagnostics line
        # The body limit of the first matching rule that gives one (None: the global limit).
        self.max_request_body_bytes = max_request_body_bytes
        # Actions of matching rules before any answer, in rule order: the engine carries
        # them out first, and one that answers wins over ``response`` (a later rule's answer).
        self.actions = actions

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in _DECISION_FIELDS)
        return f"Decision({fields})"

    def request_headers(self, headers: Sequence[tuple[bytes, bytes]]) -> Headers:
        return apply_header_ops(headers, self.request_ops) if self.request_ops else list(headers)

    def response_headers(self, status: int, headers: Sequence[tuple[bytes, bytes]]) -> Headers:
        """The response headers with the edits for ``status`` applied, in rule order."""
        if not self.response_edits:
            return list(headers)
        return apply_header_ops(headers, _ops_for(self.response_edits, status))


_DECISION_FIELDS = (
    "response",
    "target",
    "request_ops",
    "response_edits",
    "rule",
    "max_request_body_bytes",
    "actions",
)

# Nothing to do: the shared answer for most requests, so passing costs no allocation.
PASS: Final = Decision()


def apply_decision(plan: RequestPlan, decision: Decision) -> None:
    """Make ``plan`` forward what a decision without an answer says (in place): its
    rewritten target, its request-header edits, its response-header edits for later, and
    its request body limit."""
    assert decision.response is None, "an answered request is not forwarded"
    if decision.target is not None:
        plan.target = decision.target
    if decision.request_ops:
        plan.fields = apply_field_ops(plan.fields, decision.request_ops)
    if decision.response_edits:
        plan.edit_response = decision.response_headers
    plan.max_body_bytes = decision.max_request_body_bytes  # None: the global limit


class Buckets(Protocol):
    """A rate limit's token buckets: in this process (`TokenBuckets`) or shared by the workers
    (`_sharedbuckets.SharedBuckets`)."""

    evictions: int

    def take(self, key: int | str, now_s: float) -> float: ...


# Makes the buckets of the rate limit of the rule at an index (0-based) of the rule set.
BucketsFactory = Callable[[int, "RateLimit"], Buckets]


def local_buckets(index: int, limit: RateLimit) -> Buckets:
    """Buckets in this process's memory (the default)."""
    return TokenBuckets(limit.rate_per_s, limit.burst, max_clients=limit.max_clients)


class RuleEngine:
    """The rules with their run-time state (rate-limit buckets): one per proxy process."""

    __slots__ = (
        "_constant",
        "_rules",
        "clocked",
        "constant_keeps_plan",
        "has_fault_actions",
        "has_rules",
    )

    def __init__(
        self,
        rules: RuleSet,
        *,
        buckets: BucketsFactory = local_buckets,
        faults: FaultStates | None = None,
    ) -> None:
        """``faults``: fault states to keep (`keeping_faults`), by rule index, action index
        and fault; any other fault action starts afresh."""
        self._rules = tuple(
            _Compiled(
                rule,
                _buckets(index, rule.rate_limit, buckets),
                _fault_states(index, rule, faults),
            )
            for index, rule in enumerate(rules.rules)
        )
        # Read by every request (an attribute, not a `__bool__` call): whether any rule is there.
        self.has_rules = bool(self._rules)
        # Whether `evaluate` reads its clock (a rate limit), and whether a Decision may carry
        # a fault's state: what a request need not ask for when the configuration says no.
        self.clocked = any(c.buckets is not None for c in self._rules)
        self.has_fault_actions = any(c.faults for c in self._rules)
        self._constant: Decision | None = None
        if all(_same_for_all(c) for c in self._rules):
            # Rules that test nothing, never answer and rewrite nothing (a hook, or a header
            # edit, on every request) decide the same for every request: decided once, here.
            self._constant = self.evaluate(request_view(b"GET", b"/", (), ""), 0.0)
        # That decision when it changes nothing `apply_decision` would (only hooks, or faults):
        # a request given it skips the call without reading the decision's four fields.
        self.constant_keeps_plan: Decision | None = None
        decision = self._constant
        if decision is not None and not (
            decision.target is not None
            or decision.request_ops
            or decision.response_edits
            or decision.max_request_body_bytes is not None
        ):
            self.constant_keeps_plan = decision

    def keeping_buckets(self, make: BucketsFactory = local_buckets) -> BucketsFactory:
        """A factory for a reloaded rule set: a rate limit unchanged at the same place keeps
        its buckets (clients keep what they spent); others get new ones from ``make``."""
        kept = {
            (index, c.rule.rate_limit): c.buckets
            for index, c in enumerate(self._rules)
            if c.buckets is not None
        }

        def reuse(index: int, limit: RateLimit) -> Buckets:
            return kept.get((index, limit)) or make(index, limit)

        return reuse

    def keeping_faults(self) -> FaultStates:
        """The fault actions' states for a reloaded rule set: a fault unchanged at the same
        place (rule and action index) keeps its counts (``first``/``every``) and its seeded
        generator, as a rate limit keeps its buckets; a changed or moved one starts afresh."""
        return {
            (index, action, state.fault): state
            for index, c in enumerate(self._rules)
            for action, state in c.faults.items()
        }

    def __bool__(self) -> bool:
        return bool(self._rules)

    @property
    def rate_limit_evictions(self) -> int:
        """Clients whose partly spent bucket was forgotten for room (for metrics): non-zero
        means a rate limit's max_clients is too small for the traffic."""
        return sum(c.buckets.evictions for c in self._rules if c.buckets is not None)

    def constant(self, target: bytes) -> Decision | None:
        """The decision for a request with this target when the rules decide the same for
        every request and the target is origin-form and cannot be a health check, so that
        no view is made for them: what `evaluate` would return. None: ask `evaluate`.

        Such rules care about the path only as far as it is a health check: one whose target
        has no escape and no "/." normalises to a path that starts as the target does (its
        double slashes merged), and so cannot start with the health-check prefix unless the
        target has "/." (the prefix's own start). (Bytes 37 "%" and 46 ".": a bytes operand of
        ``in`` is first tried as an int, an exception made and dropped; a regex search, or
        ``find`` where the target has no dot, costs more.)"""
        decision = self._constant
        if decision is None or target[:1] != b"/" or 37 in target:
            return None
        if 46 in target and target.find(b"/.") >= 0:
            return None
        return decision

    def evaluate(self, view: RequestView, now_s: float) -> Decision:
        """Decide for one request; ``now_s`` is a monotonic clock, for the rate limits."""
        path = view.path
        if not self._rules or path.startswith(HEALTH_CHECK_PREFIX) or path[:1] != b"/":
            # Health checks: checked on the normalised path, so that ".../aee-hc/../../admin"
            # is /admin. Not origin-form (OPTIONS *): no path for rules to talk about.
            return PASS
        if self._constant is not None:
            return self._constant
        target: bytes | None = None
        # Tuples, not lists: most requests meet one or two rules, and a tuple added to an
        # empty one is that tuple (no list made, no copy into the Decision).
        request_ops: tuple[HeaderOp, ...] = ()
        edits: tuple[ResponseEdit, ...] = ()
        actions: tuple[Triggered, ...] = ()
        body_limit: int | None = None
        for compiled in self._rules:
            found: re.Match[bytes] | None = None
            if compiled.test is not None:
                captures = compiled.test(view)
                if captures is False:
                    continue
                if captures is not True:
                    found = captures
            rule = compiled.rule
            if compiled.stops:
                answer = _gate(rule, compiled.buckets, view, now_s) or _answer(rule, view, found)
                if answer is not None:
                    if compiled.edit is not None:
                        edits += (compiled.edit,)
                    response = _finish(answer, view, edits)
                    return Decision(response, rule=rule.label, actions=actions)
            if rule.actions:
                if compiled.faults:
                    actions += tuple(_triggered(compiled, found))
                elif found is None:
                    actions += compiled.triggered
                else:
                    actions += tuple(t._replace(captures=found) for t in compiled.triggered)
            if compiled.edit is not None:
                edits += (compiled.edit,)
            if rule.rewrite is not None and target is None:
                target = rule.rewrite.expand(view, found) + _query_part(view)
            if rule.request_ops:
                request_ops += rule.request_ops
            if body_limit is None:
                body_limit = rule.max_request_body_bytes
        if target is None and not request_ops and not edits and body_limit is None and not actions:
            return PASS
        # (Positional: a class called with keywords builds a dict for them.)
        return Decision(None, target, request_ops, edits, "", body_limit, actions)


class _Compiled:
    """A rule with what evaluation needs precomputed, so that each request does less."""

    __slots__ = ("buckets", "edit", "faults", "rule", "stops", "test", "triggered")

    def __init__(self, rule: Rule, buckets: Buckets | None, faults: dict[int, FaultState]) -> None:
        self.rule = rule
        request_conditions = replace(rule.match, statuses=None)
        # No condition: skip the call (rules that edit every response are common).
        self.test = None if request_conditions == _ANY else request_conditions.test
        self.buckets = buckets
        self.edit = rule.response_edit()
        self.stops = rule.allow is not None or self.buckets is not None or _answers(rule)
        # A fault action's state by its place among the actions: one per rule per process.
        self.faults = faults
        # Its actions as a request without captures triggers them (the label made once).
        label = rule.label
        self.triggered = tuple(Triggered(action, None, label) for action in rule.actions)


# A fault action's state by (rule index, action index, fault): what a reload keeps.
FaultStates = dict[tuple[int, int, Fault], FaultState]


def _fault_states(index: int, rule: Rule, kept: FaultStates | None) -> dict[int, FaultState]:
    states = {}
    for place, action in enumerate(rule.actions):
        if isinstance(action, FaultAction):
            found = kept.get((index, place, action.fault)) if kept else None
            states[place] = found or FaultState(action.fault)
    return states


def _triggered(compiled: _Compiled, found: re.Match[bytes] | None) -> Iterator[Triggered]:
    """The rule's actions for this request: a fault only when it chooses the request."""
    label = compiled.rule.label
    for index, action in enumerate(compiled.rule.actions):
        state = compiled.faults.get(index)
        if state is None:
            yield Triggered(action, found, label)
        elif state.select():
            yield Triggered(action, found, label, state)


def _same_for_all(compiled: _Compiled) -> bool:
    """Whether the rule does the same to every request it may see (its Decision's part)."""
    return (
        compiled.test is None
        and not compiled.stops
        and not compiled.faults
        and compiled.rule.rewrite is None
    )


def _answers(rule: Rule) -> bool:
    return rule.redirect is not None or rule.respond is not None or rule.deny is not None


def _buckets(index: int, limit: RateLimit | None, make: BucketsFactory) -> Buckets | None:
    return None if limit is None else make(index, limit)


def _gate(rule: Rule, buckets: Buckets | None, view: RequestView, now_s: float) -> Response | None:
    """The deny or 429 for a request this rule's allow list or rate limit stops, else None."""
    if rule.allow is not None and not rule.allow.contains(view.client_ip):
        return rule.deny or FORBIDDEN
    if buckets is not None:
        wait_s = buckets.take(_bucket_key(view.client_ip), now_s)
        if wait_s:
            return _too_many_requests(retry_after_s(wait_s))
    return None


def _bucket_key(client_ip: str) -> int | str:
    address = client_address(client_ip)
    if address is None:
        return client_ip  # not an address the platform would send; still its own bucket
    version, value = address
    # An IPv6 host usually holds a whole /64: one bucket per /64, or a single client could
    # take 2**64 buckets. Offset by 2**64 so that it cannot collide with an IPv4 address.
    return value if version == 4 else (value >> 64) | (1 << 64)


def _answer(rule: Rule, view: RequestView, captures: re.Match[bytes] | None) -> Response | None:
    if rule.redirect is not None:
        return _redirect(rule.redirect, view, captures)
    if rule.respond is not None:
        return rule.respond
    if rule.deny is not None and rule.allow is None:
        return rule.deny
    return None


def _redirect(
    redirect: Redirect, view: RequestView, captures: re.Match[bytes] | None
) -> Response | None:
    if redirect.location.uses_host and not view.host:
        return None  # no usable Host: "https://$host/" would be a broken Location
    location = redirect.location.expand(view, captures)
    if location.startswith((b"//", b"/\\")):
        # A path-relative target whose first capture starts with "/" would make a
        # scheme-relative URL, sending the client to another site: keep it on this one.
        location = b"/" + location.lstrip(b"/\\")
    return text_response(redirect.status, ((b"Location", location),))


def _ops_for(edits: Sequence[ResponseEdit], status: int) -> list[HeaderOp]:
    ops: list[HeaderOp] = []
    for edit in edits:
        if edit.statuses is None or status in edit.statuses:
            ops += edit.ops
    return ops


def _finish(answer: Response, view: RequestView, edits: Sequence[ResponseEdit]) -> Response:
    ops = _ops_for(edits, answer.status)
    body = b"" if view.method == b"HEAD" else answer.body  # Content-Length stays the GET's
    if not ops and body is answer.body:
        return answer
    headers = tuple(apply_header_ops(answer.headers, ops)) if ops else answer.headers
    return Response(answer.status, headers, body)
