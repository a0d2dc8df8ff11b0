"""Diagnostics on stderr: one line per event as text or JSON, and runs of identical upstream
failures folded into one line plus a summary per interval (standard library only; no trio).

A per-request line carries ``request_id``, ``peer`` and ``upstream`` (logging's ``extra``), so
it can be joined to its access-log line. A line that carries ``failure`` (a key naming what
went wrong, without the request's own details) is aggregated: the first of a run is written,
the rest are counted and reported by `FailureAggregator.flush`, which the proxy calls once per
interval and at exit.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..core._accesslog import AccessRecord
    from ..core._ruleengine import Decision

__all__ = [
    "AGGREGATE_INTERVAL_S",
    "FailureAggregator",
    "JsonFormatter",
    "TextFormatter",
    "describe_decision",
    "dropped_lines",
    "request_fields",
]

# As nginx's error log would print 8,064 lines in 2 s with the upstream down under load, we
# print one, then one summary line per this interval while the run lasts.
AGGREGATE_INTERVAL_S = 10.0

_CONTEXT = ("request_id", "peer", "upstream", "trace_id", "span_id")


def dropped_lines() -> int:
    """Diagnostics lines this process dropped because stderr was full (for /metrics): its
    handlers queue lines and count what a full queue refuses (`_logwriter.StderrHandler`)."""
    handlers = logging.getLogger("trioproxy").handlers
    return sum(int(getattr(handler, "dropped", 0)) for handler in handlers)


def request_fields(
    record: AccessRecord, upstream: bytes = b"", *, failure: str = ""
) -> dict[str, str]:
    """The ``extra`` of a line about one request: its ID, peer and upstream (the address
    connected to, else ``upstream``), its trace and parent span IDs when it came with a
    valid traceparent; ``failure`` makes identical ones aggregate."""
    fields = {"request_id": record.request_id.decode("ascii", "replace"), "peer": record.peer}
    if record.upstream_addr or upstream:
        fields["upstream"] = record.upstream_addr or upstream.decode("ascii", "replace")
    if record.trace_id:  # W3C trace context: the line joins the request's trace
        fields["trace_id"] = record.trace_id.decode("ascii")
        fields["span_id"] = record.span_id.decode("ascii")
    if failure:
        fields["failure"] = failure
    return fields


class describe_decision:
    """A rule decision in words, for the debug line; computed only when it is written."""

    __slots__ = ("decision",)

    def __init__(self, decision: Decision) -> None:
        self.decision = decision

    def __str__(self) -> str:
        d = self.decision
        if d.response is not None:
            return f"{d.rule or 'a rule'} answered {d.response.status}"
        done = [f"rewrite to {d.target.decode('latin-1')}"] if d.target is not None else []
        if d.request_ops:
            done.append(f"{len(d.request_ops)} request header edit(s)")
        if d.response_edits:
            done.append(f"{len(d.response_edits)} response header edit(s)")
        if d.max_request_body_bytes is not None:
            done.append(f"request body limit {d.max_request_body_bytes} bytes")
        return ", ".join(done) or "no rule applies: forwarded as it is"


def _timestamp(created: float) -> str:
    # Local time with milliseconds and the offset, like the access log's `time`.
    seconds = int(created)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(seconds))
    offset = time.strftime("%z", time.localtime(seconds))
    return f"{stamp}.{int((created - seconds) * 1000):03d}{offset[:3]}:{offset[3:]}"


class TextFormatter(logging.Formatter):
    """``TIME LEVEL trioproxy[worker]: message key=value ...``, one line."""

    def __init__(self, tag: str) -> None:
        super().__init__()
        self.tag = tag

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage().replace("\n", "\\n")
        context = "".join(
            f" {name}={value}" for name in _CONTEXT if (value := getattr(record, name, ""))
        )
        return f"{_timestamp(record.created)} {record.levelname} {self.tag}: {message}{context}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, message, and request_id/peer/upstream/
    trace_id/span_id/worker when known."""

    def __init__(self, worker: str = "") -> None:
        super().__init__()
        self.worker = worker
        import json  # only with --log-format json: the supervisor stays small otherwise

        self._dumps = json.dumps

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _timestamp(record.created),
            "level": record.levelname,
            "message": record.getMessage(),
        }
        for name in _CONTEXT:
            if value := getattr(record, name, ""):
                line[name] = value
        if self.worker:
            line["worker"] = self.worker
        return self._dumps(line, ensure_ascii=True)


class FailureAggregator(logging.Filter):
    """Passes the first record of each failure key in an interval; counts the rest."""

    def __init__(
        self,
        emit: Callable[[logging.LogRecord], object],
        *,
        interval_s: float = AGGREGATE_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._emit = emit
        self._interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()  # the access-log thread may log too
        # key -> [suppressed count, first suppressed record (for level and context)]
        self._runs: dict[str, list[Any]] = {}
        self._window_start = clock()

    def filter(self, record: logging.LogRecord) -> bool:
        key = getattr(record, "failure", "")
        if not key:
            return True
        with self._lock:
            run = self._runs.get(key)
            if run is None:
                self._runs[key] = [0, record]
                return True
            run[0] += 1
            return False

    def flush(self, *, final: bool = False) -> None:
        """Write one summary line per failure that repeated in the interval; call this once
        per interval (more often is harmless). A failure that did not repeat is forgotten:
        its next occurrence is written in full again."""
        now = self._clock()
        with self._lock:
            if not final and now - self._window_start < self._interval_s:
                return
            elapsed, self._window_start = now - self._window_start, now
            repeated = [(key, run[0], run[1]) for key, run in self._runs.items() if run[0]]
            self._runs = {key: [0, first] for key, _, first in repeated}
        for key, count, first in repeated:
            summary = logging.LogRecord(
                first.name, first.levelno, "", 0,
                "%s: %s more in the last %.0f s", (key, f"{count:,}", elapsed), None,
            )  # fmt: skip
            summary.upstream = getattr(first, "upstream", "")
            self._emit(summary)
