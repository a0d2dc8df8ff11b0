"""`response_fields`: the client's response fields and what the exchange reads of the
origin's (content type, section-io-tag, framing), from one pass; and the Via value a
`ForwardingRules` makes once."""

from __future__ import annotations

import pytest

from trioproxy.core._errors import UpstreamError
from trioproxy.core._headers import ForwardingRules, response_fields, response_headers

ORIGIN = [
    (b"Content-Type", b"text/html"),
    (b"Content-Length", b"12"),
    (b"Section-IO-Tag", b"blue"),
    (b"X-Request-ID", b"theirs"),
    (b"Keep-Alive", b"timeout=5"),
    (b"Connection", b"keep-alive"),
]


def test_the_fields_the_exchange_reads_come_with_the_clients_fields() -> None:
    fields = response_fields(ORIGIN, b"1.1", rules=ForwardingRules(), request_id=b"ours")
    assert fields.content_type == b"text/html"
    assert fields.section_io_tag == b"blue"
    assert fields.has_length and not fields.chunked
    assert fields.headers == [
        (b"Content-Type", b"text/html"),
        (b"Content-Length", b"12"),
        (b"Section-IO-Tag", b"blue"),
        (b"X-Request-ID", b"ours"),
        (b"Via", b"1.1 trioproxy"),
    ]


def test_the_first_content_type_and_tag_are_the_ones_read() -> None:
    origin = [
        (b"content-type", b"a/b"),
        (b"Content-Type", b"c/d"),
        (b"section-io-tag", b"x"),
        (b"Section-IO-Tag", b"y"),
        (b"Transfer-Encoding", b"chunked"),
    ]
    fields = response_fields(origin, b"1.1", rules=ForwardingRules())
    assert (fields.content_type, fields.section_io_tag) == (b"a/b", b"x")
    assert fields.chunked and not fields.has_length
    assert fields.headers[-1] == (b"Via", b"1.1 trioproxy")  # (chunked: h11 frames it again)
    assert (b"Transfer-Encoding", b"chunked") not in fields.headers


def test_fields_a_connection_field_names_are_dropped_as_before() -> None:
    origin = [(b"X-Secret", b"1"), (b"Connection", b"close, X-Secret"), (b"Content-Length", b"0")]
    fields = response_fields(origin, b"1.0", rules=ForwardingRules())
    assert fields.headers == [(b"Content-Length", b"0"), (b"Via", b"1.0 trioproxy")]
    assert response_headers(origin, b"1.0", rules=ForwardingRules()) == fields.headers


def test_both_framings_are_refused() -> None:
    with pytest.raises(UpstreamError, match="both Content-Length and Transfer-Encoding"):
        response_fields(
            [(b"Content-Length", b"3"), (b"Transfer-Encoding", b"chunked")],
            b"1.1",
            rules=ForwardingRules(),
        )


def test_the_via_value_is_made_once_and_rules_compare_as_configured() -> None:
    rules = ForwardingRules(via=b"edge")
    assert rules.via_value(b"1.1") == b"1.1 edge"
    assert rules.via_value(b"1.1") is rules.via_value(b"1.1")
    assert rules.via_value(b"1.0") == b"1.0 edge"
    assert rules == ForwardingRules(via=b"edge") and rules != ForwardingRules()
    assert "_via_11" not in repr(rules)
    assert response_fields([], b"1.1", rules=ForwardingRules(via=b"")).headers == []
