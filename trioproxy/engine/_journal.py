"""The journal on the event loop: fed from the access-log sink, awaited without polling."""

from __future__ import annotations

import math
from collections.abc import Callable

import trio

from ..core._accesslog import AccessRecord
from ..core._journal import Entry, ExchangeMatch, Journal, VerificationError, entry_from_access

__all__ = ["LiveJournal", "recording"]

# A test waiting for exchanges that never come fails after this, with the near misses.
WAIT_TIMEOUT_S = 10.0


class _Waiter:
    __slots__ = ("count", "done", "found", "match")

    def __init__(self, match: ExchangeMatch | None, count: int, found: list[Entry]) -> None:
        self.match = match
        self.count = count
        self.found = found
        self.done = trio.Event()

    def offer(self, entry: Entry) -> None:
        if self.match is None or self.match.matches(entry):
            self.found.append(entry)
            if len(self.found) >= self.count:
                self.done.set()


class LiveJournal(Journal):
    """A `Journal` a task can wait on (`wait_for`)."""

    __slots__ = ("_waiters",)

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self._waiters: set[_Waiter] = set()

    def record(self, entry: Entry) -> None:
        super().record(entry)
        for waiter in tuple(self._waiters):
            waiter.offer(entry)

    def record_access(self, record: AccessRecord) -> Entry:
        """An entry from an access record that has just been written (now is its end)."""
        entry = entry_from_access(self.next_seq(), record, trio.current_time() - record.duration_s)
        self.record(entry)
        return entry

    async def wait_for(
        self,
        match: ExchangeMatch | None = None,
        count: int = 1,
        *,
        timeout_s: float = WAIT_TIMEOUT_S,
    ) -> list[Entry]:
        """Wait until the journal holds ``count`` exchanges matching ``match`` (counting those
        there already) and return them; after ``timeout_s`` (the event loop's clock: virtual
        under the autojump clock), `VerificationError` with the near misses."""
        if not count >= 1 or not timeout_s >= 0 or math.isnan(timeout_s):
            raise ValueError(f"wait_for needs count >= 1 and timeout_s >= 0: {count}, {timeout_s}")
        waiter = _Waiter(match, count, self.find(match))
        if len(waiter.found) >= count:
            return waiter.found[:count]
        self._waiters.add(waiter)
        try:
            with trio.move_on_after(timeout_s):
                await waiter.done.wait()
        finally:
            self._waiters.discard(waiter)
        if len(waiter.found) >= count:
            return waiter.found[:count]
        what = match or ExchangeMatch()
        message = (
            f"waited {timeout_s:g}s for {count} exchange(s) matching {what},"
            f" found {len(waiter.found)}"
        )
        misses = self.near_misses(what)
        if misses:
            message += "\nclosest exchanges that did not match:"
            message += "".join(f"\n  {e.summary()}: {'; '.join(why)}" for e, why in misses)
        raise VerificationError(message)


def recording(
    journal: LiveJournal, log_access: Callable[[AccessRecord], None]
) -> Callable[[AccessRecord], None]:
    """An access-log sink that also records each exchange in ``journal``."""

    def sink(record: AccessRecord) -> None:
        log_access(record)
        journal.record_access(record)

    return sink
