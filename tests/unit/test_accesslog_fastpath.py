"""The access line's cheap paths give what the plain ones gave: `settle_bytes` without its
min/max calls is the old formula for any byte counts; a line made by subscript (memos of few
values, the time's second) is the line made afresh, whether a value is new (a KeyError, then
the way that keeps it), kept, or was forgotten when its memo filled up."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from trioproxy.core import _accesslog
from trioproxy.core._accesslog import AccessRecord, make_formatter, settle_bytes

from . import accesslog_before
from .test_accesslog import START, full_record

counts = st.integers(-(2**40), 2**40)


@settings(max_examples=500, deadline=None)
@given(queued=counts, body_start=counts, sent_before=counts, sent_now=counts)
def test_settled_bytes_follow_the_min_max_formula(
    queued: int, body_start: int, sent_before: int, sent_now: int
) -> None:
    record = AccessRecord(START, "10.0.0.9", body_bytes_sent=queued, body_start=body_start)
    settle_bytes(record, sent_before, sent_now)
    written = sent_now - body_start if body_start >= 0 else 0
    assert record.bytes_sent == sent_now - sent_before
    assert record.body_bytes_sent == max(0, min(queued, written))


def few_valued(n: int, at: float = 0.0) -> AccessRecord:
    """A record whose few-valued fields differ with ``n``, logged ``at`` seconds after START."""
    return dataclasses.replace(
        full_record(),
        method=b"M%d" % (n % 3),
        status=200 + n % 4,
        host=b"h%d.example" % (n % 5),
        content_type=b"" if n % 7 == 0 else b"type/%d" % (n % 6),
        x_forwarded_proto=b"https" if n % 2 else b"",
        upstream_status=0 if n % 9 == 0 else 500 + n % 3,
        upstream_addr="" if n % 11 == 0 else f"10.1.2.{n % 4}:80",
        section_io_tag=b"" if n % 5 == 0 else b"t\xff%d" % (n % 2),
        start_wall=START + at,
    )


def test_lines_by_subscript_are_the_lines_made_afresh_through_every_memo_state() -> None:
    for fmt in ("json", "ltsv"):
        new = make_formatter(fmt)
        before = accesslog_before.make_formatter(fmt)
        # More values than a memo keeps: memos fill up and start over, values come back.
        for n in [*range(3 * _accesslog._MEMO_ENTRIES), *range(40, 0, -1)]:
            # A new second every few lines, and now and then one seen before.
            record = few_valued(n * 7919 % 97, at=n * 0.37)
            assert new(record) == before(record), (fmt, n)
            assert new(record) == before(record), (fmt, n)  # kept now


def test_added_fields_and_a_new_second_are_written_on_the_plain_path() -> None:
    new, before = make_formatter("json"), accesslog_before.make_formatter("json")
    record = dataclasses.replace(few_valued(1), extra=(("hook", "v"),))
    assert new(record) == before(record)  # (nothing kept yet: the second, the values)
    assert new(few_valued(1)) == before(few_valued(1))
