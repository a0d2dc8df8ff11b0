"""The access line is, for every record, the line the renderer wrote before its memos changed
(`accesslog_before`, a frozen copy): JSON and LTSV, any field selection, values with quotes,
backslashes, control characters, NUL, non-ASCII, lone surrogates and great length. Each
renderer serves many records in turn, so what its memos kept is tested too."""

from __future__ import annotations

import functools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from trioproxy.core._accesslog import ACCESS_LOG_FIELDS, AccessRecord, Formatter, make_formatter

from . import accesslog_before

# Printable ASCII but the two characters JSON escapes: the values of nearly every request.
PLAIN = st.characters(min_codepoint=0x20, max_codepoint=0x7E, blacklist_characters='"\\')
plain_text = st.text(PLAIN, max_size=30)
plain_bytes = plain_text.map(lambda text: text.encode("ascii"))
# The rest: any byte, any character (surrogates included), and long values.
odd_bytes = st.one_of(
    st.binary(max_size=30),
    st.sampled_from([b'"', b"\\", b"\x00", b"\x7f", b"a?b", b"?", b"\t", b"\xff", b"-"]),
    st.builds(lambda n, c: c * n, st.integers(4000, 10_000), st.sampled_from([b"x", b"?", b"\\"])),
)
odd_text = st.one_of(
    st.text(st.characters(blacklist_categories=()), max_size=20),
    st.sampled_from(["", "-", '"', "\\", "\x00", "\udc80", "é", "\u2028", "::1"]),
)

BYTE_FIELDS = (
    "method",
    "target",
    "http_version",
    "host",
    "referrer",
    "user_agent",
    "x_forwarded_proto",
    "x_forwarded_for",
    "true_client_ip",
    "section_io_id",
    "request_id",
    "content_type",
    "section_io_tag",
    "trace_id",
    "span_id",
)
TEXT_FIELDS = ("peer", "upstream_addr")


@st.composite
def records(draw: st.DrawFn) -> AccessRecord:
    """Mostly plain records, some with one odd value, some odd throughout."""
    mode = draw(st.sampled_from(["plain", "one odd", "odd"]))
    values: dict[str, Any] = {}
    for name in BYTE_FIELDS:
        values[name] = draw(odd_bytes if mode == "odd" else st.one_of(st.just(b""), plain_bytes))
    for name in TEXT_FIELDS:
        values[name] = draw(odd_text if mode == "odd" else plain_text)
    if mode == "one odd":
        name = draw(st.sampled_from(BYTE_FIELDS + TEXT_FIELDS))
        values[name] = draw(odd_text if name in TEXT_FIELDS else odd_bytes)
    numbers = st.one_of(st.integers(0, 10), st.integers(0, 2**70))
    return AccessRecord(
        start_wall=draw(st.floats(0, 4e9)),
        status=draw(st.one_of(st.just(0), st.integers(100, 999))),
        bytes_sent=draw(numbers),
        bytes_received=draw(numbers),
        body_bytes_sent=draw(numbers),
        duration_s=draw(st.floats(0, 1e7)),
        upstream_status=draw(st.one_of(st.just(0), st.integers(100, 599))),
        upstream_duration_s=draw(st.one_of(st.just(-1.0), st.floats(-10, 1e7))),
        extra=tuple(draw(st.lists(st.tuples(odd_text, odd_text), max_size=2))),
        **values,
    )


field_selections = st.one_of(
    st.just(()),
    st.just(ACCESS_LOG_FIELDS),
    st.lists(st.sampled_from(ACCESS_LOG_FIELDS), unique=True, min_size=1).map(tuple),
)


@functools.cache
def renderers(fmt: str, fields: tuple[str, ...]) -> tuple[Formatter, Formatter]:
    return make_formatter(fmt, fields), accesslog_before.make_formatter(fmt, fields)


@settings(max_examples=300, deadline=None)
@given(record=records(), fields=field_selections, fmt=st.sampled_from(["json", "ltsv"]))
def test_every_line_is_the_line_written_before(
    record: AccessRecord, fields: tuple[str, ...], fmt: str
) -> None:
    new, before = renderers(fmt, fields)
    assert new(record) == before(record)
