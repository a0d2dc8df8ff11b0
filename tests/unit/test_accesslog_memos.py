"""The JSON line's memos (`_accesslog`): a value seen before is written as when it was new,
whatever came between; the time follows its millisecond; no memo outgrows its bound."""

from __future__ import annotations

import dataclasses
import itertools
import json

from trioproxy.core import _accesslog
from trioproxy.core._accesslog import FIELD_GETTERS, AccessRecord, make_formatter

from .test_accesslog import START, full_record


def expected(record: AccessRecord) -> dict[str, str]:
    return {name: get(record) for name, get in FIELD_GETTERS.items()}


def variants() -> list[AccessRecord]:
    """Records that differ in every memoized field, values that need escaping among them."""
    full = full_record()
    return [
        full,
        AccessRecord(START, "10.0.0.9"),  # nothing known: "-" everywhere it can be
        dataclasses.replace(full, true_client_ip=b"", peer="192.0.2.1"),  # the peer instead
        dataclasses.replace(
            full,
            method=b"GET",
            target=b'/caf\xc3\xa9?q="x"',
            http_version=b"1.0",
            host=b"h\xe9te",
            user_agent=b'say "hi"\\',
            content_type=b"",
            status=404,
            upstream_status=0,
            upstream_addr="",
            upstream_duration_s=-1.0,
            bytes_sent=0,
            duration_s=0.0004,
        ),
        dataclasses.replace(full, target=b"/" + b"x" * 500, user_agent=b"u" * 500),  # long
        dataclasses.replace(full, start_wall=START + 0.0004),  # the same millisecond
        dataclasses.replace(full, start_wall=START + 0.0011),  # the next one
        dataclasses.replace(full, start_wall=START - 86400.5),  # another day
    ]


def test_every_value_is_written_as_when_new_whatever_came_before() -> None:
    records = variants()
    render = make_formatter("json")
    # Every order of every pair, each twice: kept values must be the right ones.
    for first, second in itertools.product(records, repeat=2):
        for record in (first, second, first, second):
            line = render(record)
            assert line.isascii() and "\n" not in line
            assert json.loads(line) == expected(record)


def test_a_memo_never_outgrows_its_bound() -> None:
    render = make_formatter("json")
    for n in range(3 * _accesslog._MEMO_ENTRIES):  # every value new: a crawl, an attack
        record = dataclasses.replace(
            full_record(),
            user_agent=b"agent/%d" % n,
            target=b"/page/%d" % n,
            bytes_sent=n,
            peer=f"192.0.2.{n % 250}",
        )
        assert json.loads(render(record)) == expected(record)
    memos = [value for name, value in render.__globals__.items() if name.startswith("_m")]
    assert len(memos) == 15  # all but the time, durations, sizes, request ID, trace and span
    assert all(len(memo) <= _accesslog._MEMO_ENTRIES for memo in memos)
    sizes = [len(memo) for memo in memos if isinstance(memo, dict)]
    assert max(sizes) > 1  # (they were in use)


def test_long_values_are_never_kept() -> None:
    render = make_formatter("json", ("useragent", "path"))
    record = dataclasses.replace(full_record(), user_agent=b"u" * 1000, target=b"/" + b"p" * 1000)
    assert json.loads(render(record)) == {"useragent": "u" * 1000, "path": "/" + "p" * 1000}
    memos = [value for name, value in render.__globals__.items() if name.startswith("_m")]
    assert memos == [{}, {}]


def test_each_formatter_has_memos_of_its_own() -> None:
    first, second = make_formatter("json"), make_formatter("json")
    first(full_record())
    assert not any(memo for name, memo in second.__globals__.items() if name.startswith("_m"))
