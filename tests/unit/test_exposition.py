"""/metrics is written without prometheus-client: the bytes are exactly what its
generate_latest writes for the same numbers (which MetricsSnapshot.collect gives it)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import CollectorRegistry

from trioproxy.engine._exposition import exposition
from trioproxy.engine._metrics import MetricsSnapshot, RequestMetrics

from ..support import access_record


def _reference(snapshot: MetricsSnapshot) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(snapshot)
    return generate_latest(registry)


def _snapshot(records: list[tuple[bytes, int, int, float, float]]) -> MetricsSnapshot:
    metrics = RequestMetrics(max_hostnames=3)
    for host, status, sent, duration, upstream in records:
        metrics.observe(access_record(host, status, sent, duration, upstream, peer="-"))
    scalars = (
        ("gauge", "trioproxy_downstream_connections_open", "Client connections open now", 3),
        ("counter", "trioproxy_upstream_retries", "Retries \\ with a\nnewline", 12345678.0),
        ("gauge", "trioproxy_workers", "Worker processes accepting now", 2),
    )
    return metrics.snapshot(scalars)


def test_a_snapshot_with_every_kind_of_sample_is_written_as_prometheus_client_writes_it() -> None:
    snapshot = _snapshot(
        [
            (b"a.example", 200, 512, 0.003, 0.002),
            (b'q"uote\\back\nslash', 404, 0, 0.0, -1.0),
            (b"caf\xe9.example", 0, 10**9, 200.0, 150.0),
            (b"", 503, 7, 1.0, 0.5),
            (b"late.example", 302, 1, 0.2, 0.1),  # beyond the cap: "other"
        ]
    )
    assert exposition(snapshot) == _reference(snapshot)


@given(
    st.lists(
        st.tuples(
            st.binary(max_size=8),
            st.sampled_from([0, 101, 200, 301, 404, 499, 502, 999]),
            st.integers(0, 10**12),
            st.floats(0, 1e4),
            st.floats(-1, 1e4),
        ),
        max_size=20,
    )
)
def test_any_snapshot_is_written_as_prometheus_client_writes_it(
    records: list[tuple[bytes, int, int, float, float]],
) -> None:
    snapshot = _snapshot(records)
    assert exposition(snapshot) == _reference(snapshot)
