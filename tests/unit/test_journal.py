"""The journal: a bounded ring of exchanges, matched, counted, and a failed verify that shows
the near misses (WireMock's), pinned word for word."""

from __future__ import annotations

import pytest

from trioproxy.core._journal import Entry, ExchangeMatch, Journal, VerificationError


def _entry(seq: int, method: str, target: str, status: int, **more: object) -> Entry:
    return Entry(seq, method, target, status=status, **more)  # type: ignore[arg-type]


def _journal() -> Journal:
    journal = Journal(10)
    journal.record(_entry(1, "GET", "/health", 200))
    journal.record(_entry(2, "POST", "/api/items", 201, request_headers=(("X-Team", "b"),)))
    journal.record(_entry(3, "GET", "/api/items?page=2", 503, faults=("first-two-fail",)))
    journal.record(_entry(4, "GET", "/api/items", 200, request_headers=(("X-Team", "a"),)))
    return journal


def test_a_match_holds_when_every_condition_given_holds() -> None:
    journal = _journal()
    assert [e.seq for e in journal.find(ExchangeMatch(method="GET"))] == [1, 3, 4]
    assert [e.seq for e in journal.find(ExchangeMatch(path="/api/items"))] == [2, 3, 4]
    assert [e.seq for e in journal.find(ExchangeMatch(path_regex=r"^/api/\w+$"))] == [2, 3, 4]
    assert [e.seq for e in journal.find(ExchangeMatch(headers={"x-team": None}))] == [2, 4]
    assert [e.seq for e in journal.find(ExchangeMatch(headers={"X-TEAM": "a"}))] == [4]
    assert [e.seq for e in journal.find(ExchangeMatch(fault="first-two-fail"))] == [3]
    assert journal.count(ExchangeMatch(method="GET", path_prefix="/api/", status=200)) == 1


def test_verify_returns_the_matching_exchanges_when_their_number_is_right() -> None:
    journal = _journal()
    assert [e.seq for e in journal.verify(ExchangeMatch(path_prefix="/api/"), times=3)] == [2, 3, 4]
    journal.verify(ExchangeMatch(method="GET"), at_least=2, at_most=3)
    journal.verify(ExchangeMatch(method="DELETE"), times=0)


def test_a_failed_verify_shows_the_closest_exchanges_and_why_each_did_not_match() -> None:
    journal = _journal()
    with pytest.raises(VerificationError) as failed:
        journal.verify(ExchangeMatch(method="GET", path="/api/items", status=201), times=1)
    assert str(failed.value) == (
        "expected exactly 1 exchange matching method='GET', path='/api/items', status=201,"
        " found 0 of 4 in the journal\n"
        "closest exchanges that did not match:\n"
        "  #4 GET /api/items -> 200: status is 200, not 201\n"
        "  #3 GET /api/items?page=2 -> 503: status is 503, not 201\n"
        "  #2 POST /api/items -> 201: method is POST, not GET"
    )


def test_too_many_matches_are_listed_rather_than_near_misses() -> None:
    journal = _journal()
    with pytest.raises(VerificationError) as failed:
        journal.verify(ExchangeMatch(method="GET", path_prefix="/api/"), at_most=1)
    assert str(failed.value) == (
        "expected at most 1 exchange matching method='GET', path_prefix='/api/',"
        " found 2 of 4 in the journal\n"
        "the matching exchanges:\n"
        "  #3 GET /api/items?page=2 -> 503\n"
        "  #4 GET /api/items -> 200"
    )


def test_headers_faults_and_missing_responses_read_in_the_reasons() -> None:
    journal = Journal(3)
    journal.record(_entry(1, "GET", "/a", 0, request_headers=(("x-team", "b"),)))
    wanted = ExchangeMatch(headers={"x-team": "a", "x-trace": None}, fault="reset")
    assert journal.near_misses(wanted) == [
        (
            journal.find()[0],
            [
                "fault reset not applied (none)",
                "header x-team is 'b', not 'a'",
                "no x-trace header",
            ],
        )
    ]
    with pytest.raises(VerificationError, match=r"#1 GET /a -> no response: fault reset"):
        journal.verify(wanted)


def test_the_ring_keeps_the_last_n_and_says_how_many_it_dropped() -> None:
    journal = Journal(2)
    for seq in range(1, 6):
        journal.record(_entry(seq, "GET", f"/{seq}", 200))
    assert [e.seq for e in journal] == [4, 5]
    assert (journal.recorded, journal.dropped, journal.next_seq()) == (5, 3, 6)
    with pytest.raises(VerificationError, match=r"found 0 of 2 in the journal \(3 older ones"):
        journal.verify(ExchangeMatch(path="/1"))
    journal.clear()
    assert len(journal) == 0 and journal.next_seq() == 6


def test_an_entry_is_plain_json() -> None:
    entry = _entry(7, "GET", "/a?b", 200, request_body_prefix=b"\xff", faults=("x",))
    entry.request_headers = (("Host", "h"),)
    out = entry.as_json()
    assert out["request_body_prefix"] == "\xff"
    assert out["request_headers"] == [["Host", "h"]] and out["faults"] == ["x"]
    assert out["forwarded_headers"] is None and out["status"] == 200


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: Journal(0), "at least 1"),
        (lambda: ExchangeMatch(path_regex="("), "missing \\)"),
        (lambda: _journal().verify(ExchangeMatch(), times=1, at_least=1), "not both"),
    ],
)
def test_misuse_fails_at_once(call: object, message: str) -> None:
    with pytest.raises(Exception, match=message):
        call()  # type: ignore[operator]
