"""Request metrics: plain ints on the hot path, copied and written as Prometheus text on scrape.

Every finished request (every access-log record) goes through `RequestMetrics.observe`, once, on
the event loop. A prometheus-client metric object would cost microseconds there (a lock and a
label lookup per call, per metric); a list index and an integer add cost tens of nanoseconds. So
this module keeps its own counters, copied (`ProxyCollector.snapshot`) and written in the text
format (`_exposition`) only when ``/metrics`` is scraped. Recording and the copy both run on the
trio thread, so the counters need no lock. Formatting the copy is the slow part (milliseconds
for thousands of series), so the admin server does that in a worker thread, and the proxy's
requests do not wait for it. With ``--workers N`` the supervisor sums the workers' copies
(`merge_snapshots`).

Besides the proxy's own series (``trioproxy_*``), the collector exposes the two counters that
Section's metrics sidecar (``section-io/module-metrics``) derives from access-log lines, with the
same names and labels, so dashboards built on the sidecar keep working:

- ``section_http_request_count_total{hostname, status}``
- ``section_http_bytes_total{hostname, status}``: bytes sent downstream, head included

``hostname`` and ``status`` carry what the access log's fields of the same names carry (the Host
header as received, "-" when there is none; the status code sent, "-" when none was). The Host
header is the client's to choose, so distinct host names are capped (`MAX_HOSTNAMES`); later ones
are counted under ``hostname="other"`` so that a scan of random names cannot grow the series
without bound.

This module never imports trio: it is unit-testable synchronously.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client.core import HistogramMetricFamily, Metric

    from ..core._accesslog import AccessRecord

# prometheus_client (about 9 MiB of memory) is imported only by `collect`, for code that wants
# the snapshot as prometheus-client metric families; /metrics is written by `_exposition`.

__all__ = [
    "DURATION_BUCKETS_S",
    "MAX_HOSTNAMES",
    "OTHER_HOSTNAME",
    "MetricsSnapshot",
    "RequestMetrics",
    "merge_snapshots",
    "observing",
]

# Upper bounds (seconds) of the duration histograms' buckets. Prometheus' default buckets
# (5 ms .. 10 s) with 1 ms and 2.5 ms below, for a proxy next to its origin, and 30, 60 and 120 s
# above, where the connect (60 s) and response (120 s) timeouts end requests.
DURATION_BUCKETS_S: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
)

# Distinct `hostname` label values before the rest are folded into OTHER_HOSTNAME. With a
# handful of statuses per host, that stays within a few thousand series.
MAX_HOSTNAMES = 1000
OTHER_HOSTNAME = b"other"

# Status classes: index status // 100 of a list of ten counters. Statuses are three digits
# (h11 parses three; ours are 4xx/5xx) or 0 when none was sent, so the index is always 0..9.
_CLASS_LABELS = ("none", "1xx", "2xx", "3xx", "4xx", "5xx", "6xx", "7xx", "8xx", "9xx")
_ALWAYS_SHOWN_CLASSES = range(1, 6)  # 1xx..5xx appear even at 0, so rate() works from the start


class _Histogram:
    """Per-bucket counts (not cumulative: one increment per observation) and the sum."""

    __slots__ = ("counts", "total")

    def __init__(self, bucket_count: int) -> None:
        self.counts = [0] * (bucket_count + 1)  # the last one is +Inf
        self.total = 0.0


class RequestMetrics:
    """Counters fed once per finished request; copied by `snapshot` at scrape time."""

    __slots__ = (
        "_bounds",
        "_hostnames",
        "_max_hostnames",
        "by_class",
        "bytes_sent",
        "duration",
        "observed",
        "section",
        "upstream_duration",
    )

    def __init__(
        self,
        *,
        buckets_s: tuple[float, ...] = DURATION_BUCKETS_S,
        max_hostnames: int = MAX_HOSTNAMES,
    ) -> None:
        self.observed = 0
        self.by_class = [0] * len(_CLASS_LABELS)
        self.bytes_sent = 0
        self.duration = _Histogram(len(buckets_s))
        self.upstream_duration = _Histogram(len(buckets_s))
        # (Host header, status) -> [requests, bytes sent]: the Section sidecar's two counters.
        self.section: dict[tuple[bytes, int], list[int]] = {}
        self._bounds = buckets_s
        self._hostnames: set[bytes] = set()
        self._max_hostnames = max_hostnames

    def observe(self, record: AccessRecord) -> None:
        """Count one finished request. Runs on the hot path: plain arithmetic, no allocation
        beyond one tuple, and the histogram updates inlined."""
        status = record.status
        sent = record.bytes_sent
        self.observed += 1
        self.by_class[status // 100] += 1
        self.bytes_sent += sent
        bounds = self._bounds
        seconds = record.duration_s
        histogram = self.duration
        histogram.counts[bisect_left(bounds, seconds)] += 1  # first bound >= value: "le"
        histogram.total += seconds
        seconds = record.upstream_duration_s
        if seconds >= 0:  # negative: no upstream exchange
            histogram = self.upstream_duration
            histogram.counts[bisect_left(bounds, seconds)] += 1
            histogram.total += seconds
        series = self.section.get((record.host, status))
        if series is None:
            series = self._new_series(record.host, status)
        series[0] += 1
        series[1] += sent

    def _new_series(self, host: bytes, status: int) -> list[int]:
        # The first request for a (host, status) pair, or any request of a folded host.
        if host not in self._hostnames:
            if len(self._hostnames) >= self._max_hostnames:
                host = OTHER_HOSTNAME
            else:
                self._hostnames.add(host)
        return self.section.setdefault((host, status), [0, 0])

    def snapshot(
        self, scalars: tuple[Scalar, ...] = (), hooks: tuple[HookSeries, ...] = ()
    ) -> MetricsSnapshot:
        """A copy of every counter, plus ``scalars``. Call it on the event loop (where the
        counters change); the copy can then be read anywhere, e.g. formatted in a thread."""
        return MetricsSnapshot(
            bounds=self._bounds,
            by_class=tuple(self.by_class),
            bytes_sent=self.bytes_sent,
            duration=(tuple(self.duration.counts), self.duration.total),
            upstream_duration=(tuple(self.upstream_duration.counts), self.upstream_duration.total),
            section=tuple(
                (host, status, counts[0], counts[1])
                for (host, status), counts in self.section.items()
            ),
            scalars=scalars,
            hooks=hooks,
        )


# One hook's counters: (label, calls, errors, timeouts, slow steps, seconds in calls).
HookSeries = tuple[str, int, int, int, int, float]
# (family name, help, index among the counts after the label) of the per-hook families.
HOOK_FAMILIES = (
    ("trioproxy_hook_calls_total", "Calls of each hook's points", 0),
    ("trioproxy_hook_errors_total", "Hook calls that raised (on_error applied)", 1),
    ("trioproxy_hook_timeouts_total", "Hook calls past their timeout_s (on_error applied)", 2),
    ("trioproxy_hook_slow_steps_total", "Steps of hook code that held the event loop 50 ms+", 3),
    ("trioproxy_hook_seconds_total", "Time spent in hook calls", 4),
)


# A proxy-wide number read at scrape time: (type, name, help, value), type "counter" or "gauge".
Scalar = tuple[str, str, str, float]
_HistogramCopy = tuple[tuple[int, ...], float]  # per-bucket counts, sum


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """Every number of one scrape, frozen; a prometheus-client collector of its own."""

    bounds: tuple[float, ...]
    by_class: tuple[int, ...]
    bytes_sent: int
    duration: _HistogramCopy
    upstream_duration: _HistogramCopy
    section: tuple[tuple[bytes, int, int, int], ...]  # host, status, requests, bytes
    scalars: tuple[Scalar, ...] = ()
    hooks: tuple[HookSeries, ...] = ()  # only when the configuration has hooks

    def as_tuple(self) -> tuple[Any, ...]:
        """Plain values only (for the worker channel); `from_tuple` makes it a snapshot again."""
        return tuple(getattr(self, name) for name in self.__slots__)

    @classmethod
    def from_tuple(cls, values: tuple[Any, ...]) -> MetricsSnapshot:
        return cls(*values)

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        requests = CounterMetricFamily(
            "trioproxy_requests",
            "Requests answered (one per access-log line), by status class; none = no status sent",
            labels=["code_class"],
        )
        for index, label in enumerate(_CLASS_LABELS):
            count = self.by_class[index]
            if count or index in _ALWAYS_SHOWN_CLASSES:
                requests.add_metric([label], count)
        yield requests
        yield CounterMetricFamily(
            "trioproxy_response_bytes",
            "Bytes sent to clients, response heads included",
            value=self.bytes_sent,
        )
        yield self._histogram(
            "trioproxy_request_duration_seconds",
            "Time from a complete request head to the end of the response",
            self.duration,
        )
        yield self._histogram(
            "trioproxy_upstream_duration_seconds",
            "Time spent on the upstream exchange (connection, request and response)",
            self.upstream_duration,
        )
        yield from self._section_families()
        for kind, name, documentation, value in self.scalars:
            family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            yield family(name, documentation, value=value)
        if self.hooks:
            for name, documentation, index in HOOK_FAMILIES:
                counter = CounterMetricFamily(name, documentation, labels=["hook"])
                for series in self.hooks:
                    counter.add_metric([series[0]], series[1:][index])
                yield counter

    def _histogram(
        self, name: str, documentation: str, histogram: _HistogramCopy
    ) -> HistogramMetricFamily:
        from prometheus_client.core import HistogramMetricFamily

        counts, total = histogram
        buckets: list[tuple[str, float]] = []
        cumulative = 0
        for bound, count in zip(self.bounds, counts, strict=False):
            cumulative += count
            # repr() is how prometheus-client writes "le" for bounds below 1e6: "0.005", "1.0".
            buckets.append((repr(float(bound)), cumulative))
        buckets.append(("+Inf", cumulative + counts[-1]))
        return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=total)

    def _section_families(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily

        counts = CounterMetricFamily(
            "section_http_request_count_total",
            "Requests by Host header and status (as Section's metrics sidecar counts them)",
            labels=["hostname", "status"],
        )
        sent = CounterMetricFamily(
            "section_http_bytes_total",
            "Bytes sent downstream by Host header and status (as Section's metrics sidecar)",
            labels=["hostname", "status"],
        )
        for host, status, requests_count, bytes_count in self.section:
            labels = [_hostname_label(host), str(status) if status else "-"]
            counts.add_metric(labels, requests_count)
            sent.add_metric(labels, bytes_count)
        yield counts
        yield sent


def merge_snapshots(
    snapshots: list[MetricsSnapshot],
    extra: tuple[Scalar, ...] = (),
    *,
    max_hostnames: int = MAX_HOSTNAMES,
) -> MetricsSnapshot:
    """The workers' snapshots as one: every count and sum added, every gauge added too (so
    open connections are the container's), then ``extra`` (the supervisor's own numbers).
    The hostname cap applies again to the sum, first come first kept in worker order, so the
    whole never has more than ``max_hostnames`` distinct hosts either."""
    if not snapshots:  # no worker answered: zeros, not an empty page
        return RequestMetrics().snapshot(extra)
    section: dict[tuple[bytes, int], list[int]] = {}
    hosts: set[bytes] = set()
    scalars: dict[str, Scalar] = {}
    for snapshot in snapshots:
        for host, status, requests_count, bytes_count in snapshot.section:
            label = host
            if host not in hosts:
                if len(hosts) < max_hostnames:
                    hosts.add(host)
                else:
                    label = OTHER_HOSTNAME
            series = section.setdefault((label, status), [0, 0])
            series[0] += requests_count
            series[1] += bytes_count
        for kind, name, documentation, value in snapshot.scalars:
            known = scalars.get(name)
            scalars[name] = (kind, name, documentation, value + (known[3] if known else 0))
    return MetricsSnapshot(
        bounds=snapshots[0].bounds,
        by_class=_add(s.by_class for s in snapshots),
        bytes_sent=sum(s.bytes_sent for s in snapshots),
        duration=(_add(s.duration[0] for s in snapshots), sum(s.duration[1] for s in snapshots)),
        upstream_duration=(
            _add(s.upstream_duration[0] for s in snapshots),
            sum(s.upstream_duration[1] for s in snapshots),
        ),
        section=tuple((host, status, c[0], c[1]) for (host, status), c in section.items()),
        scalars=(*scalars.values(), *extra),
        hooks=_merge_hooks(s.hooks for s in snapshots),
    )


def _merge_hooks(per_worker: Iterable[tuple[HookSeries, ...]]) -> tuple[HookSeries, ...]:
    merged: dict[str, list[float]] = {}
    for hooks in per_worker:
        for label, *values in hooks:
            known = merged.setdefault(label, [0] * len(values))
            merged[label] = [a + b for a, b in zip(known, values, strict=True)]
    return tuple(
        (label, int(v[0]), int(v[1]), int(v[2]), int(v[3]), float(v[4]))
        for label, v in merged.items()
    )


def _add(columns: Iterable[tuple[int, ...]]) -> tuple[int, ...]:
    return tuple(sum(values) for values in zip(*columns, strict=True))


def observing(
    metrics: RequestMetrics, sink: Callable[[AccessRecord], None]
) -> Callable[[AccessRecord], None]:
    """An access-log sink that also counts each record: every logged request is counted, and
    only those, so the metrics agree with the access log by construction (as the Section
    sidecar's, which are parsed from it)."""
    observe = metrics.observe

    def log_and_count(record: AccessRecord) -> None:
        sink(record)
        observe(record)

    return log_and_count


def _hostname_label(host: bytes) -> str:
    # As the access log renders `hostname`: latin-1 maps every byte to one character, and "-"
    # stands for a request without Host. prometheus-client escapes quotes and backslashes.
    return host.decode("latin-1") if host else "-"
