"""A line does not depend on the lines before it (`_accesslog`): a value seen before is written
as when it was new, whatever came between, on either path; the time follows its millisecond."""

from __future__ import annotations

import dataclasses
import itertools
import json

from trioproxy.core._accesslog import FIELD_GETTERS, AccessRecord, make_formatter

from .test_accesslog import START, full_record


def expected(record: AccessRecord) -> dict[str, str]:
    return {name: get(record) for name, get in FIELD_GETTERS.items()}


def variants() -> list[AccessRecord]:
    """Records that differ in every field, values that need escaping among them."""
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
