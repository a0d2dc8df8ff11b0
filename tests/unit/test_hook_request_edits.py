"""A hook's header edits (`Exchange.set_request_header`, `set_response_header` and their
kin): kept in the order asked, each added without copying those before it.

Found in review: each edit made a new tuple of all the edits so far, so a hook making N edits
copied N²/2 of them.
"""

from __future__ import annotations

import pytest

from trioproxy.core._rulemodel import HeaderOp, OpKind, apply_header_ops
from trioproxy.hooks import Exchange, HookError, Request

EDITS = 20_000  # quadratic, ~200 million copied references; linear, a blink


def _exchange() -> Exchange:
    return Exchange(Request("GET", "/", "/", (), "1.2.3.4", "http", "id"))


def test_many_edits_are_added_to_one_list_not_copied_each_time() -> None:
    exchange = _exchange()
    exchange.set_request_header("X-Edit", "0")
    kept = exchange._request_ops
    for n in range(1, EDITS):
        exchange.add_request_header("X-Edit", str(n))
    assert exchange._request_ops is kept  # the same object all along: no copy per edit
    assert [op.value for op in kept] == [b"%d" % n for n in range(EDITS)]


def test_many_response_edits_are_added_to_one_list_not_copied_each_time() -> None:
    exchange = _exchange()
    exchange.set_response_header("X-Edit", "0")
    kept = exchange._response_ops
    for n in range(1, EDITS):
        exchange.add_response_header("X-Edit", str(n))
    assert exchange._response_ops is kept
    assert [op.value for op in kept] == [b"%d" % n for n in range(EDITS)]


def test_edits_keep_their_order_and_apply_as_asked() -> None:
    exchange = _exchange()
    exchange.add_request_header("X-A", "1")
    exchange.set_request_header("X-B", "2")
    exchange.remove_request_header("X-C")
    exchange.add_request_header("X-A", "3")
    assert list(exchange._request_ops) == [
        HeaderOp(OpKind.ADD, b"X-A", b"1"),
        HeaderOp(OpKind.SET, b"X-B", b"2"),
        HeaderOp(OpKind.REMOVE, b"X-C"),
        HeaderOp(OpKind.ADD, b"X-A", b"3"),
    ]
    received = [(b"X-C", b"gone"), (b"X-B", b"old"), (b"Host", b"x")]
    assert apply_header_ops(received, exchange._request_ops) == [
        (b"X-B", b"2"),
        (b"Host", b"x"),
        (b"X-A", b"1"),
        (b"X-A", b"3"),
    ]


def test_a_refused_edit_adds_nothing_and_a_forgotten_hook_starts_afresh() -> None:
    exchange = _exchange()
    with pytest.raises(HookError):
        exchange.set_request_header("X-A", "a\r\nX-Injected: 1")
    assert not exchange._request_ops and not exchange._asks
    exchange.set_request_header("X-A", "1")
    exchange._forget()  # on_error "pass": as if it had asked for nothing
    assert not exchange._request_ops
    exchange.set_request_header("X-B", "2")
    assert list(exchange._request_ops) == [HeaderOp(OpKind.SET, b"X-B", b"2")]
