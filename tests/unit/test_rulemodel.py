"""The rules' building blocks (`core/_rulemodel`): header edits and CIDR sets. Pure.
(Split out of the former test_rules.py.)"""

from __future__ import annotations

import ipaddress

from trioproxy.core._rulemodel import CidrSet, HeaderOp, OpKind, apply_header_ops


def test_apply_header_ops() -> None:
    headers = [(b"A", b"1"), (b"b", b"2"), (b"a", b"3"), (b"C", b"4")]
    ops = [
        HeaderOp(OpKind.SET, b"A", b"x"),  # replaces both, where the first was
        HeaderOp(OpKind.REMOVE, b"C"),
        HeaderOp(OpKind.ADD, b"b", b"5"),
        HeaderOp(OpKind.SET, b"New", b"n"),  # absent: appended
        HeaderOp(OpKind.REMOVE, b"absent"),
    ]
    assert apply_header_ops(headers, ops) == [
        (b"A", b"x"),
        (b"b", b"2"),
        (b"b", b"5"),
        (b"New", b"n"),
    ]
    assert headers[0] == (b"A", b"1")  # the input is left alone


def test_cidr_set() -> None:
    nets = CidrSet((ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::/32")))
    assert [nets.contains(a) for a in ["10.255.0.1", "11.0.0.1", "2001:db8:1::", "::1", "x"]] == [
        True,
        False,
        True,
        False,
        False,
    ]
    smaller = CidrSet((ipaddress.ip_network("10.1.0.0/16"),))
    assert nets.covers(smaller)
    assert not smaller.covers(nets)
