"""The Prometheus text format (0.0.4) of a `MetricsSnapshot`, written directly (pure).

prometheus-client's ``generate_latest`` writes the same bytes (a test holds the two to it),
but importing prometheus-client costs about 9 MiB of memory (it brings ``http.server``,
``email``, ``ssl``...), in the proxy and in the ``--workers`` supervisor, for the first scrape
of a handful of families of plain numbers. The families, their order and their samples are
`MetricsSnapshot.collect`'s.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ._metrics import _ALWAYS_SHOWN_CLASSES, _CLASS_LABELS, HOOK_FAMILIES, MetricsSnapshot

if TYPE_CHECKING:
    from ._collector import ProxyCollector
    from ._metrics import _HistogramCopy

__all__ = ["exposition", "render"]


def exposition(collector: MetricsSnapshot | ProxyCollector) -> bytes:
    """The Prometheus text format (0.0.4) of a snapshot (the bytes
    prometheus-client would write, without importing it). Given a `MetricsSnapshot`, safe
    to run in a worker thread; a `ProxyCollector` is copied first (on the event loop)."""
    return render(collector if isinstance(collector, MetricsSnapshot) else collector.snapshot())


def render(snapshot: MetricsSnapshot) -> bytes:
    out: list[str] = []
    _family(
        out,
        "trioproxy_requests_total",
        "Requests answered (one per access-log line), by status class; none = no status sent",
        "counter",
    )
    for index, label in enumerate(_CLASS_LABELS):
        count = snapshot.by_class[index]
        if count or index in _ALWAYS_SHOWN_CLASSES:
            out.append(f'trioproxy_requests_total{{code_class="{label}"}} {_value(count)}\n')
    _family(
        out,
        "trioproxy_response_bytes_total",
        "Bytes sent to clients, response heads included",
        "counter",
    )
    out.append(f"trioproxy_response_bytes_total {_value(snapshot.bytes_sent)}\n")
    _histogram(
        out,
        snapshot.bounds,
        "trioproxy_request_duration_seconds",
        "Time from a complete request head to the end of the response",
        snapshot.duration,
    )
    _histogram(
        out,
        snapshot.bounds,
        "trioproxy_upstream_duration_seconds",
        "Time spent on the upstream exchange (connection, request and response)",
        snapshot.upstream_duration,
    )
    requests, sent = [], []
    for host, status, requests_count, bytes_count in snapshot.section:
        # As the access log renders them: latin-1 maps every byte to one character, "-" is none.
        hostname = _label(host.decode("latin-1")) if host else "-"
        labels = f'{{hostname="{hostname}",status="{status or "-"}"}}'
        requests.append(f"section_http_request_count_total{labels} {_value(requests_count)}\n")
        sent.append(f"section_http_bytes_total{labels} {_value(bytes_count)}\n")
    _family(
        out,
        "section_http_request_count_total",
        "Requests by Host header and status (as Section's metrics sidecar counts them)",
        "counter",
    )
    out += requests
    _family(
        out,
        "section_http_bytes_total",
        "Bytes sent downstream by Host header and status (as Section's metrics sidecar)",
        "counter",
    )
    out += sent
    for kind, scalar, documentation, value in snapshot.scalars:
        name = scalar.removesuffix("_total") + "_total" if kind == "counter" else scalar
        _family(out, name, documentation, kind)
        out.append(f"{name} {_value(value)}\n")
    for name, documentation, index in HOOK_FAMILIES if snapshot.hooks else ():
        _family(out, name, documentation, "counter")
        for series in snapshot.hooks:
            out.append(f'{name}{{hook="{_label(series[0])}"}} {_value(series[1:][index])}\n')
    return "".join(out).encode("utf-8")


def _family(out: list[str], name: str, documentation: str, kind: str) -> None:
    help_text = documentation.replace("\\", r"\\").replace("\n", r"\n")
    out.append(f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n")


def _histogram(
    out: list[str],
    bounds: tuple[float, ...],
    name: str,
    documentation: str,
    histogram: _HistogramCopy,
) -> None:
    counts, total = histogram
    _family(out, name, documentation, "histogram")
    cumulative = 0
    for bound, count in zip(bounds, counts, strict=False):
        cumulative += count
        # repr() is how prometheus-client writes "le" for bounds below 1e6: "0.005", "1.0".
        out.append(f'{name}_bucket{{le="{float(bound)!r}"}} {_value(cumulative)}\n')
    cumulative += counts[-1]
    out.append(f'{name}_bucket{{le="+Inf"}} {_value(cumulative)}\n')
    out.append(f"{name}_count {_value(cumulative)}\n")
    out.append(f"{name}_sum {_value(total)}\n")


def _label(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _value(number: float) -> str:
    """A sample value as Go (and prometheus-client's floatToGoString) writes it."""
    value = float(number)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    text = repr(value)
    dot = text.find(".")
    if value > 0 and dot > 6:  # Go switches to exponents sooner than Python
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return text
