"""The access line over long runs of one renderer, as a busy proxy makes them: records a few
milliseconds apart across second boundaries (the time's second memo), values drawn from small
pools so that the memos of few values are hit by subscript and miss (KeyError, the line made
again), more distinct values than a memo keeps (it starts over), values just around a memo's
length bound, and added fields every so often; JSON and LTSV, through `make_formatter` and
through the writer (`make_logger`). Each line is the line `accesslog_before`
(a frozen copy) writes for the same record."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from trioproxy.core._accesslog import ACCESS_LOG_FIELDS, AccessRecord, make_formatter, make_logger

from . import accesslog_before

_POOL = st.sampled_from(
    [b"", b"GET", b"POST", b"a" * 150, b"b" * 159, b"c" * 160, b"d" * 161, b"\xff\x00", b'"q"',
     b"x.example", b"y.example", b"text/html", *(b"v%d" % n for n in range(40))]
)  # fmt: skip
_TEXTS = st.sampled_from(["", "10.0.0.1:80", "::1", "é", "e" * 161, *(f"h{n}" for n in range(40))])


@st.composite
def runs(draw: st.DrawFn) -> list[AccessRecord]:
    start = draw(st.floats(1e9, 2e9))
    steps = draw(
        st.lists(
            st.sampled_from([0.0, 0.0004, 0.001, 0.3, 0.9991, 1.0, 2.5]), min_size=1, max_size=60
        )
    )
    records = []
    for step in steps:
        start += step
        values: dict[str, Any] = {name: draw(_POOL) for name in _BYTES}
        values.update({name: draw(_TEXTS) for name in ("peer", "upstream_addr")})
        records.append(
            AccessRecord(
                start_wall=start,
                status=draw(st.sampled_from([0, 200, 304, 404, 502, 599, 999])),
                upstream_status=draw(st.sampled_from([0, 200, 500])),
                duration_s=draw(st.sampled_from([0.0, 0.0012, 1.5])),
                bytes_sent=draw(st.integers(0, 10**6)),
                extra=draw(st.sampled_from([(), (("k", "v"),), (("é", "\t"),)])),
                **values,
            )
        )
    return records


_BYTES = (
    "method", "target", "http_version", "host", "referrer", "user_agent", "x_forwarded_proto",
    "x_forwarded_for", "true_client_ip", "section_io_id", "request_id", "content_type",
    "section_io_tag", "trace_id", "span_id",
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    records=runs(),
    fmt=st.sampled_from(["json", "ltsv"]),
    fields=st.one_of(
        st.just(ACCESS_LOG_FIELDS),
        st.lists(st.sampled_from(ACCESS_LOG_FIELDS), unique=True, min_size=1).map(tuple),
    ),
)
def test_a_run_of_lines_is_the_run_written_before(
    records: list[AccessRecord], fmt: str, fields: tuple[str, ...]
) -> None:
    written: list[str] = []
    new = make_formatter(fmt, fields)
    writer = make_logger(fmt, fields, written.append)
    before = accesslog_before.make_formatter(fmt, fields)
    for record in records:
        expected = before(record)
        assert new(record) == expected
        writer(record)
        assert written[-1] == expected
