"""The journal: the last N exchanges as records a test can assert on (pure).

A `Journal` is a bounded ring of `Entry` records, one per exchange, in the order the exchanges
ended. `ExchangeMatch` says which exchanges a test means (method, path, path prefix or regex,
headers, status, the fault, hook or rule applied); `Journal.verify` counts them and, when the
count is wrong, fails with the closest exchanges and why each did not match (WireMock's near
misses). Waiting for exchanges needs an event loop: `engine._journal` adds it.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from ._accesslog import AccessRecord

__all__ = [
    "DEFAULT_SIZE",
    "Entry",
    "ExchangeMatch",
    "Journal",
    "VerificationError",
    "entry_from_access",
]

DEFAULT_SIZE = 1000  # exchanges kept when a size is not given: a test's worth
_NEAR_MISSES = 3  # exchanges a failed verify shows
# A journal as JSON comes in slices (`Journal.json_slices`) so that an event loop serves others
# between them: a slice ends once it holds this many characters or has looked at this many
# entries, matched or not. An ordinary entry is ~1.7k characters and ~50 us to render (json's
# indented encoder is pure Python), ~3 us to match: a slice is about half a millisecond.
SLICE_CHARS = 16384
SLICE_ENTRIES = 64
# Entries let go of at a time by `Journal.clear_in_slices`: ~2.5 us each to free.
FREE_SLICE = 256


Headers = tuple[tuple[str, str], ...]


@dataclass(slots=True)
class Entry:
    """One exchange as the proxy saw it. Text is latin-1 decoded bytes (every byte one
    character); times are the event loop's clock in seconds (the autojump clock's in a
    memory world); ``None`` where the exchange never got that far."""

    seq: int  # 1 for the first exchange the journal recorded, counting those it dropped
    method: str
    target: str  # as received (origin-form: path and query)
    request_headers: Headers = ()  # as received
    forwarded_target: str | None = None  # as sent to the origin; None: not forwarded
    forwarded_headers: Headers | None = None
    request_body_prefix: bytes = b""  # the first bytes of the request body, up to the limit
    status: int = 0  # sent to the client; 0: none (the client went away, or a fault)
    upstream_status: int = 0  # 0: no response from the origin
    upstream_headers: Headers | None = None  # the response head as received
    response_headers: Headers | None = None  # the response head as sent
    bytes_sent: int = 0  # to the client, head included
    bytes_received: int = 0  # from the client, head and body included
    start_s: float = 0.0  # the request head complete
    first_byte_s: float | None = None  # the first response byte sent
    end_s: float = 0.0
    upstream_addr: str = ""
    upstream_reused: bool | None = None  # None: no upstream connection
    request_id: str = ""
    rules: tuple[str, ...] = ()  # labels of the rules applied, in rule order
    hooks: tuple[str, ...] = ()
    faults: tuple[str, ...] = ()  # labels of the faults carried out

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]

    def header(self, name: str) -> str | None:
        """The first request header named ``name`` (any case), as received."""
        lname = name.lower()
        return next((v for n, v in self.request_headers if n.lower() == lname), None)

    def summary(self) -> str:
        status = str(self.status) if self.status else "no response"
        return f"#{self.seq} {self.method} {self.target} -> {status}"

    def as_json(self) -> dict[str, Any]:
        """The entry as plain JSON values (bytes as latin-1 text, headers as [name, value])."""
        out: dict[str, Any] = {}
        for name in _ENTRY_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bytes):
                value = value.decode("latin-1")
            elif isinstance(value, tuple):
                value = [list(item) if isinstance(item, tuple) else item for item in value]
            out[name] = value
        return out


_ENTRY_FIELDS = tuple(f.name for f in fields(Entry))


def entry_from_access(seq: int, record: AccessRecord, start_s: float) -> Entry:
    """What an access record tells the journal, its notes (heads, reuse) included."""
    text = _latin1
    entry = Entry(
        seq=seq,
        method=text(record.method),
        target=text(record.target),
        status=record.status,
        upstream_status=record.upstream_status,
        bytes_sent=record.bytes_sent,
        bytes_received=record.bytes_received,
        start_s=start_s,
        end_s=start_s + record.duration_s,
        upstream_addr=record.upstream_addr,
        request_id=text(record.request_id),
        faults=record.faults,
    )
    notes = record.notes
    if notes is not None:
        entry.request_headers = _headers(notes.request_headers)
        if notes.forwarded_target is not None:
            entry.forwarded_target = text(notes.forwarded_target)
        entry.forwarded_headers = _maybe_headers(notes.forwarded_headers)
        entry.upstream_headers = _maybe_headers(notes.upstream_headers)
        entry.response_headers = _maybe_headers(notes.response_headers)
        entry.first_byte_s = notes.first_byte_s
        entry.upstream_reused = notes.upstream_reused
        entry.rules = notes.rules
        entry.hooks = notes.hooks
        if notes.request_body:
            entry.request_body_prefix = bytes(notes.request_body)
    return entry


def _latin1(data: bytes) -> str:
    return data.decode("latin-1")


def _headers(raw: Sequence[tuple[bytes, bytes]]) -> Headers:
    return tuple((name.decode("latin-1"), value.decode("latin-1")) for name, value in raw)


def _maybe_headers(raw: Sequence[tuple[bytes, bytes]] | None) -> Headers | None:
    return None if raw is None else _headers(raw)


# --- Matching ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExchangeMatch:
    """Which exchanges a test means; every condition given must hold, None means any.

    ``headers`` maps a request header name (any case) to its value as received, or to None for
    "present with any value". ``fault``, ``hook`` and ``rule`` name one applied (a label, as
    ``GET /faults`` and the journal show them)."""

    method: str | None = None
    path: str | None = None
    path_prefix: str | None = None
    path_regex: str | None = None
    headers: Mapping[str, str | None] = field(default_factory=dict)
    status: int | None = None
    fault: str | None = None
    hook: str | None = None
    rule: str | None = None

    def __post_init__(self) -> None:
        if self.path_regex is not None:
            re.compile(self.path_regex)  # a bad pattern fails here, not at the first entry

    def why_not(self, entry: Entry) -> list[str]:
        """Why ``entry`` does not match, one reason per failed condition; [] if it matches."""
        reasons = [reason for check in _CHECKS if (reason := check(self, entry))]
        reasons += _header_reasons(self.headers, entry)
        return reasons

    def matches(self, entry: Entry) -> bool:
        return not self.why_not(entry)

    def __str__(self) -> str:
        parts = [
            f"{name}={value!r}"
            for name in ("method", "path", "path_prefix", "path_regex", "status")
            if (value := getattr(self, name)) is not None
        ]
        parts += [
            f"header {n}={v!r}" if v is not None else f"header {n}" for n, v in self.headers.items()
        ]
        parts += [
            f"{name} {value!r} applied"
            for name in ("fault", "hook", "rule")
            if (value := getattr(self, name)) is not None
        ]
        return ", ".join(parts) or "any exchange"


Check = Callable[[ExchangeMatch, Entry], str]


def _method(m: ExchangeMatch, e: Entry) -> str:
    return f"method is {e.method}, not {m.method}" if m.method not in (None, e.method) else ""


def _path(m: ExchangeMatch, e: Entry) -> str:
    return f"path is {e.path}, not {m.path}" if m.path not in (None, e.path) else ""


def _prefix(m: ExchangeMatch, e: Entry) -> str:
    if m.path_prefix is None or e.path.startswith(m.path_prefix):
        return ""
    return f"path {e.path} does not start with {m.path_prefix}"


def _regex(m: ExchangeMatch, e: Entry) -> str:
    if m.path_regex is None or re.search(m.path_regex, e.path):
        return ""
    return f"path {e.path} does not match /{m.path_regex}/"


def _status(m: ExchangeMatch, e: Entry) -> str:
    if m.status is None or m.status == e.status:
        return ""
    return f"status is {e.status or 'none'}, not {m.status}"


def _applied(kind: str) -> Check:
    def check(m: ExchangeMatch, e: Entry) -> str:
        wanted, applied = getattr(m, kind), getattr(e, f"{kind}s")
        # A rule by its label ("rules[2] (flaky)") or by its name alone ("flaky").
        if (
            wanted is None
            or wanted in applied
            or f"({wanted})" in (a[-len(wanted) - 2 :] for a in applied)
        ):
            return ""
        return f"{kind} {wanted} not applied ({', '.join(applied) or 'none'})"

    return check


_CHECKS: tuple[Check, ...] = (
    _method,
    _path,
    _prefix,
    _regex,
    _status,
    _applied("fault"),
    _applied("hook"),
    _applied("rule"),
)


def _header_reasons(wanted: Mapping[str, str | None], entry: Entry) -> list[str]:
    reasons = []
    for name, value in wanted.items():
        found = entry.header(name)
        if found is None:
            reasons.append(f"no {name} header")
        elif value is not None and found != value:
            reasons.append(f"header {name} is {found!r}, not {value!r}")
    return reasons


# --- The journal -----------------------------------------------------------------------------


class VerificationError(AssertionError):
    """A journal assertion failed; the message shows the near misses."""


class Journal:
    """The last ``size`` exchanges, oldest first. Not thread-safe: one event loop feeds it."""

    __slots__ = ("_entries", "dropped", "recorded", "size")

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        if size < 1:
            raise ValueError(f"a journal keeps at least 1 exchange, not {size}")
        self.size = size
        self._entries: deque[Entry] = deque(maxlen=size)
        self.recorded = 0  # every exchange ever recorded
        self.dropped = 0  # the oldest, gone to make room

    def record(self, entry: Entry) -> None:
        if len(self._entries) == self.size:
            self.dropped += 1
        self._entries.append(entry)
        self.recorded += 1

    def copy(self) -> Journal:
        """A journal holding the same entries and counts (entries are not changed once
        recorded): to read in another thread while this one goes on recording."""
        copied = Journal(self.size)
        copied._entries.extend(self._entries)
        copied.recorded, copied.dropped = self.recorded, self.dropped
        return copied

    def next_seq(self) -> int:
        return self.recorded + 1

    def __iter__(self) -> Iterator[Entry]:
        return iter(tuple(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Forget every entry (``seq`` keeps counting, so a later entry is never mistaken for
        an earlier one)."""
        self._entries.clear()

    def clear_in_slices(self) -> tuple[int, Iterator[None]]:
        """`clear` at once, with the memory let go of a slice (`FREE_SLICE` entries) at each
        step of the iterator: freeing 100,000 entries takes a quarter of a second. How many
        were forgotten, and that iterator."""
        forgotten, self._entries = self._entries, deque(maxlen=self.size)
        return len(forgotten), _let_go(forgotten)

    def find(self, match: ExchangeMatch | None = None) -> list[Entry]:
        return [e for e in self._entries if match is None or match.matches(e)]

    def count(self, match: ExchangeMatch | None = None) -> int:
        return len(self.find(match))

    def verify(
        self,
        match: ExchangeMatch,
        times: int | None = None,
        *,
        at_least: int | None = None,
        at_most: int | None = None,
    ) -> list[Entry]:
        """The matching entries, if their number is as expected: exactly ``times``, or within
        ``at_least``/``at_most`` (by default: at least one). Otherwise `VerificationError`."""
        found = self.find(match)
        expected = _expected(times, at_least, at_most)
        low, high = expected
        if low <= len(found) and (high is None or len(found) <= high):
            return found
        raise VerificationError(self._failure(match, found, expected))

    def _failure(
        self, match: ExchangeMatch, found: list[Entry], expected: tuple[int, int | None]
    ) -> str:
        lines = [
            f"expected {_describe_count(expected)} matching {match},"
            f" found {len(found)} of {len(self._entries)} in the journal"
            + (f" ({self.dropped} older ones dropped)" if self.dropped else "")
        ]
        if len(found) > (expected[1] if expected[1] is not None else len(found)):
            lines.append("the matching exchanges:")
            lines += [f"  {entry.summary()}" for entry in found]
            return "\n".join(lines)
        misses = self.near_misses(match)
        if misses:
            lines.append("closest exchanges that did not match:")
            lines += [f"  {entry.summary()}: {'; '.join(why)}" for entry, why in misses]
        return "\n".join(lines)

    def near_misses(
        self, match: ExchangeMatch, limit: int = _NEAR_MISSES
    ) -> list[tuple[Entry, list[str]]]:
        """The non-matching entries with the fewest failed conditions (the latest first among
        equals), with the reasons."""
        scored = [
            (entry, why) for entry in reversed(self._entries) if (why := match.why_not(entry))
        ]
        scored.sort(key=lambda pair: len(pair[1]))  # stable: the latest stay first
        return scored[:limit]

    def as_json(self, match: ExchangeMatch | None = None) -> dict[str, Any]:
        return self._counts([entry.as_json() for entry in self.find(match)])

    def json_slices(self, match: ExchangeMatch | None = None) -> Iterator[str]:
        """``json.dumps(self.as_json(match), indent=1)`` in slices that join to exactly that
        text, each a bounded amount of work (`SLICE_CHARS`, `SLICE_ENTRIES`, and one entry at
        most past them): a full journal takes seconds to render. The entries are those of
        now (a copy of the references: a millisecond or two for 100,000): an exchange recorded,
        or a `clear`, while the slices are taken changes nothing."""
        opening = json.dumps(self._counts([]), indent=1)
        return _json_slices(opening[: -len(_NO_ENTRIES)], deque(self._entries), match)

    def _counts(self, entries: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "size": self.size,
            "recorded": self.recorded,
            "dropped": self.dropped,
            "entries": entries,
        }


_NO_ENTRIES = "[]\n}"  # how `json_slices`' opening (the counts, "entries" empty) ends


def _json_slices(opening: str, entries: deque[Entry], match: ExchangeMatch | None) -> Iterator[str]:
    # Each entry is dumped alone, then indented by the two levels it has in the whole: every
    # line break in json's output is its own (one inside a string is written as "\\n").
    # Taken off the copy as it goes: if the journal was cleared meanwhile, each entry is freed
    # within its slice, not all of them at the end.
    parts, chars, looked = [opening], 0, 0
    separator = "[\n  "
    while entries:
        entry = entries.popleft()
        looked += 1
        if match is None or match.matches(entry):
            text = json.dumps(entry.as_json(), indent=1).replace("\n", "\n  ")
            parts += (separator, text)
            chars += len(text)
            separator = ",\n  "
        if chars >= SLICE_CHARS or looked >= SLICE_ENTRIES:
            yield "".join(parts)
            parts, chars, looked = [], 0, 0
    parts.append(_NO_ENTRIES if separator == "[\n  " else "\n ]\n}")
    yield "".join(parts)


def _let_go(entries: deque[Entry]) -> Iterator[None]:
    while entries:
        for _ in range(min(FREE_SLICE, len(entries))):
            entries.pop()
        yield None


def _expected(
    times: int | None, at_least: int | None, at_most: int | None
) -> tuple[int, int | None]:
    if times is not None:
        if at_least is not None or at_most is not None:
            raise ValueError("verify takes times, or at_least/at_most, not both")
        return times, times
    if at_least is None and at_most is None:
        return 1, None
    return at_least or 0, at_most


def _describe_count(expected: tuple[int, int | None]) -> str:
    low, high = expected
    if low == high:
        return f"exactly {low} exchange{'s' if low != 1 else ''}"
    if high is None:
        return f"at least {low} exchange{'s' if low != 1 else ''}"
    if low == 0:
        return f"at most {high} exchange{'s' if high != 1 else ''}"
    return f"from {low} to {high} exchanges"
