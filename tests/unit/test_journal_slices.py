"""The journal as JSON in slices (`Journal.json_slices`, `AdminControl.in_slices`): the same
bytes as the whole journal dumped at once, each slice a bounded amount of work, the journal
as it was when asked; and a clear's memory let go of in slices."""

from __future__ import annotations

import json
from typing import Any

import pytest

from trioproxy.core._admincontrol import AdminControl, json_answer
from trioproxy.core._faulttable import FaultTable
from trioproxy.core._journal import (
    FREE_SLICE,
    SLICE_CHARS,
    SLICE_ENTRIES,
    Entry,
    ExchangeMatch,
    Journal,
)

ODD = 'a "quoted" \\ back\nslash\r\t\x00\x1f\x7f caf\u00e9 \u00ff \u2028'  # what json escapes


def _entry(seq: int, target: str = "/x", **fields: Any) -> Entry:
    return Entry(seq, "GET", target, **fields)


def _journal(entries: list[Entry], size: int = 100) -> Journal:
    journal = Journal(size)
    for entry in entries:
        journal.record(entry)
    return journal


def _control(journal: Journal | None) -> AdminControl:
    return AdminControl(journal, FaultTable(), lambda raw, problem: None)


def _whole(journal: Journal, match: ExchangeMatch | None = None) -> bytes:
    """The answer's body as it was rendered before the slices: the whole journal at once."""
    return json.dumps(journal.as_json(match), indent=1).encode("ascii") + b"\n"


VARIED = [
    _entry(1),
    _entry(
        2,
        "/odd?q=" + ODD,
        request_headers=(("X-Odd", ODD), ("Host", "x")),
        forwarded_target="/rewritten",
        forwarded_headers=(),
        request_body_prefix=bytes(range(256)),
        status=502,
        upstream_headers=None,
        response_headers=(("Content-Length", "0"),),
        start_s=1.5,
        first_byte_s=None,
        end_s=1e-7,
        upstream_reused=False,
        rules=("rules[0] (a)", "rules[3]"),
        hooks=("check",),
        faults=("slow",),
    ),
    _entry(3, "/y", status=200, upstream_reused=True, end_s=123456789.25),
]


@pytest.mark.parametrize(
    ("entries", "size", "match"),
    [
        ([], 100, None),  # "entries": []
        (VARIED[:1], 100, None),
        (VARIED, 100, None),
        (VARIED, 2, None),  # one dropped
        (VARIED, 100, ExchangeMatch(path="/y")),
        (VARIED, 100, ExchangeMatch(status=404)),  # none matches
        (VARIED, 100, ExchangeMatch(headers={"x-odd": ODD})),
    ],
)
def test_the_slices_join_to_the_whole_journal_dumped_at_once(
    entries: list[Entry], size: int, match: ExchangeMatch | None
) -> None:
    journal = _journal(entries, size)
    assert "".join(journal.json_slices(match)) == json.dumps(journal.as_json(match), indent=1)


def test_the_admin_answer_is_the_same_bytes_in_pieces_or_whole() -> None:
    journal = _journal(VARIED * 50, size=1000)
    control = _control(journal)
    for target in (b"/journal", b"/journal?path_prefix=/odd", b"/journal?status=999"):
        match = ExchangeMatch(path_prefix="/odd") if b"odd" in target else None
        match = ExchangeMatch(status=999) if b"999" in target else match
        pieces = control.in_slices(b"GET", target)
        assert pieces is not None
        assert b"".join(pieces) == _whole(journal, match)
        assert control.answer(b"GET", target, b"") == json_answer(200, journal.as_json(match))
        head = control.in_slices(b"HEAD", target)
        assert head is not None and b"".join(head) == _whole(journal, match)


def test_what_is_not_a_journal_read_or_clear_is_left_to_answer() -> None:
    control = _control(_journal(VARIED))
    assert control.in_slices(b"POST", b"/journal") is None
    assert control.in_slices(b"GET", b"/faults") is None
    assert control.in_slices(b"GET", b"/journal?color=red") is None  # a 400, from answer
    assert control.answer(b"GET", b"/journal?color=red", b"")[0] == 400
    assert _control(None).in_slices(b"GET", b"/journal") is None  # a 404, from answer


def test_a_slice_looks_at_a_bounded_number_of_entries() -> None:
    # None matches: each slice but the last looks at SLICE_ENTRIES entries and renders none.
    journal = _journal([_entry(n) for n in range(10 * SLICE_ENTRIES)], size=10 * SLICE_ENTRIES)
    slices = list(journal.json_slices(ExchangeMatch(status=404)))
    assert len(slices) == 11
    assert "".join(slices) == json.dumps(journal.as_json(ExchangeMatch(status=404)), indent=1)


def test_a_slice_renders_a_bounded_number_of_characters() -> None:
    big = ("X-Big", "v" * 2000)
    entries = [_entry(n, request_headers=(big,) * (n % 5)) for n in range(600)]
    journal = _journal(entries, size=600)
    longest_entry = max(len(json.dumps(e.as_json(), indent=1)) for e in entries) * 2
    slices = list(journal.json_slices())
    assert len(slices) > len("".join(slices)) // (SLICE_CHARS + longest_entry)
    assert max(map(len, slices)) < SLICE_CHARS + longest_entry


def test_the_slices_show_the_journal_as_it_was_when_asked() -> None:
    journal = _journal(VARIED, size=3)
    before = json.dumps(journal.as_json(), indent=1)
    slices = journal.json_slices()
    journal.record(_entry(4, "/later"))  # drops the oldest
    journal.clear()
    assert "".join(slices) == before


def test_a_clear_forgets_at_once_and_lets_go_of_the_entries_in_slices() -> None:
    count = 10 * FREE_SLICE + 1
    journal = _journal([_entry(n) for n in range(count)], size=count)
    pieces = _control(journal).in_slices(b"DELETE", b"/journal")
    assert pieces is not None
    assert len(journal) == 0 and journal.recorded == count  # forgotten before the first step
    journal.record(_entry(count + 1))  # recorded meanwhile: kept
    body = list(pieces)
    assert len(body) == 11 + 1  # the slices, then the answer
    twin = _journal([_entry(n) for n in range(count)], size=count)
    assert b"".join(body) == _control(twin).answer(b"DELETE", b"/journal", b"")[2]
    assert b"".join(body) == json_answer(200, {"cleared": count})[2]
    assert [e.seq for e in journal] == [count + 1]
