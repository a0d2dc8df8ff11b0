"""W3C traceparent parsed strictly (`core._tracecontext`), and where its IDs are written:
access-log fields and diagnostics context. Pure: no sockets, no trio."""

from __future__ import annotations

import json
import logging

import pytest

from trioproxy.core._accesslog import AccessRecord, make_formatter
from trioproxy.core._tracecontext import parse_traceparent, trace_ids
from trioproxy.engine._diagnostics import JsonFormatter, TextFormatter, request_fields

TRACE = b"4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = b"00f067aa0ba902b7"
VALID = b"00-" + TRACE + b"-" + PARENT + b"-01"


@pytest.mark.parametrize(
    "value",
    [
        VALID,
        b"00-" + TRACE + b"-" + PARENT + b"-00",  # not sampled: still a trace to join
        b"cc-" + TRACE + b"-" + PARENT + b"-01",  # a later version: its first fields count
        b"cc-" + TRACE + b"-" + PARENT + b"-01-what-the-future-adds",
    ],
)
def test_valid_values_give_the_trace_and_parent_ids(value: bytes) -> None:
    assert parse_traceparent(value) == (TRACE, PARENT)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (b"", "empty"),
        (VALID.upper(), "upper-case hex (HEXDIGLC)"),
        (VALID + b"-00", "version 00 has exactly four fields"),
        (VALID[:-1], "short flags"),
        (b"ff" + VALID[2:], "version ff is forbidden"),
        (b"00-" + b"0" * 32 + b"-" + PARENT + b"-01", "all-zero trace-id"),
        (b"00-" + TRACE + b"-" + b"0" * 16 + b"-01", "all-zero parent-id"),
        (b"00-" + TRACE[:-1] + b"-" + PARENT + b"-01", "short trace-id"),
        (b"00_" + VALID[3:], "wrong separator"),
        (b"cc-" + TRACE + b"-" + PARENT + b"-01x", "a later version's field without -"),
        (b"0g" + VALID[2:], "non-hex version"),
        (b" " + VALID, "leading space (h11 strips OWS; anything else is not ours to mend)"),
        (VALID + b", " + VALID, "two values combined"),
    ],
)
def test_invalid_values_are_ignored(value: bytes, why: str) -> None:
    assert parse_traceparent(value) is None, why


def test_only_a_single_traceparent_field_counts() -> None:
    one = [(b"Host", b"x"), (b"TraceParent", VALID), (b"tracestate", b"a=b")]
    assert trace_ids(one) == (TRACE, PARENT)
    assert trace_ids([(b"traceparent", VALID), (b"traceparent", VALID)]) is None
    assert trace_ids([(b"Host", b"x")]) is None


def record(**fields: bytes) -> AccessRecord:
    return AccessRecord(start_wall=0.0, peer="10.0.0.9", request_id=b"req-1", **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", ["json", "ltsv"])
def test_the_access_line_carries_the_ids_or_a_dash(fmt: str) -> None:
    render = make_formatter(fmt, ("request_id", "trace_id", "span_id"))
    traced, untraced = render(record(trace_id=TRACE, span_id=PARENT)), render(record())
    if fmt == "json":
        assert json.loads(traced) == {
            "request_id": "req-1",
            "trace_id": TRACE.decode(),
            "span_id": PARENT.decode(),
        }
        assert json.loads(untraced) == {"request_id": "req-1", "trace_id": "-", "span_id": "-"}
    else:
        assert traced == f"request_id:req-1\ttrace_id:{TRACE.decode()}\tspan_id:{PARENT.decode()}"
        assert untraced == "request_id:req-1\ttrace_id:-\tspan_id:-"


def test_diagnostics_lines_carry_the_ids_only_when_there_are_some() -> None:
    assert request_fields(record()) == {"request_id": "req-1", "peer": "10.0.0.9"}
    fields = request_fields(record(trace_id=TRACE, span_id=PARENT))
    assert fields["trace_id"] == TRACE.decode() and fields["span_id"] == PARENT.decode()
    line = logging.LogRecord("trioproxy", logging.INFO, "", 0, "hello", None, None)
    for name, value in fields.items():
        setattr(line, name, value)
    text = TextFormatter("trioproxy").format(line)
    assert text.endswith(f"hello request_id=req-1 peer=10.0.0.9 trace_id={TRACE.decode()}"
                         f" span_id={PARENT.decode()}")  # fmt: skip
    parsed = json.loads(JsonFormatter().format(line))
    assert (parsed["trace_id"], parsed["span_id"]) == (TRACE.decode(), PARENT.decode())
