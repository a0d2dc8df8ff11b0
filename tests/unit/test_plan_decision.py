"""A rules `Decision` applied to a `RequestPlan`: what the request forwarded upstream becomes."""

from __future__ import annotations

import pytest

from trioproxy.core._headers import BodyKind, RequestPlan, lowered
from trioproxy.core._ruleengine import PASS, Decision, apply_decision
from trioproxy.core._rulemodel import HeaderOp, OpKind, Response, ResponseEdit


def _plan() -> RequestPlan:
    return RequestPlan(
        target=b"/old?q=1",
        fields=lowered([(b"Host", b"example.com"), (b"X-Drop", b"1")]),
        body=BodyKind.NONE,
        idempotent=True,
        upgrade=False,
        peer_trusted=True,
        request_id=b"",
        host=b"",
        noted={},
    )


def test_passing_leaves_the_plan_as_it_was() -> None:
    plan = _plan()
    apply_decision(plan, PASS)
    assert plan == _plan()


def test_a_rewrite_replaces_the_target() -> None:
    plan = _plan()
    apply_decision(plan, Decision(target=b"/new?q=1"))
    assert plan.target == b"/new?q=1"
    assert plan.headers == _plan().headers


def test_request_header_edits_apply_to_the_forwarded_headers_in_order() -> None:
    plan = _plan()
    ops = (
        HeaderOp(OpKind.REMOVE, b"x-drop"),
        HeaderOp(OpKind.SET, b"Host", b"origin.internal"),
        HeaderOp(OpKind.ADD, b"X-Edge", b"yes"),
    )
    apply_decision(plan, Decision(request_ops=ops))
    assert plan.headers == [(b"Host", b"origin.internal"), (b"X-Edge", b"yes")]
    assert plan.target == b"/old?q=1"


def test_response_edits_are_kept_for_the_response_and_apply_by_status() -> None:
    plan = _plan()
    edit = ResponseEdit(frozenset({404}), (HeaderOp(OpKind.ADD, b"X-Missing", b"1"),))
    apply_decision(plan, Decision(response_edits=(edit,)))
    assert plan.edit_response is not None
    assert plan.edit_response(404, [(b"A", b"b")]) == [(b"A", b"b"), (b"X-Missing", b"1")]
    assert plan.edit_response(200, [(b"A", b"b")]) == [(b"A", b"b")]


def test_without_response_edits_the_response_is_not_edited() -> None:
    plan = _plan()
    apply_decision(plan, Decision(target=b"/new"))
    assert plan.edit_response is None


def test_an_answer_is_never_applied_to_a_plan() -> None:
    with pytest.raises(AssertionError):
        apply_decision(_plan(), Decision(response=Response(403, ())))
