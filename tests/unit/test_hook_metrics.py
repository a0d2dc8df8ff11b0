"""Per-hook counters on /metrics: written as prometheus-client would write them, summed over
workers, and absent when no hook is configured."""

from __future__ import annotations

from prometheus_client.exposition import generate_latest
from prometheus_client.registry import CollectorRegistry

from trioproxy.engine._exposition import exposition
from trioproxy.engine._metrics import MetricsSnapshot, RequestMetrics, merge_snapshots

HOOKS = (
    ("hooks/auth.py:check", 10, 1, 2, 3, 0.25),
    ('odd "label"\\', 1, 0, 0, 0, 1e-05),
)


def _reference(snapshot: MetricsSnapshot) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(snapshot)
    return generate_latest(registry)


def test_hook_families_are_written_as_prometheus_client_writes_them() -> None:
    snapshot = RequestMetrics().snapshot((), HOOKS)
    text = exposition(snapshot)
    assert text == _reference(snapshot)
    assert b'trioproxy_hook_slow_steps_total{hook="hooks/auth.py:check"} 3.0\n' in text


def test_no_hook_no_family() -> None:
    assert b"trioproxy_hook" not in exposition(RequestMetrics().snapshot())


def test_workers_hook_counters_are_summed() -> None:
    one = RequestMetrics().snapshot((), HOOKS[:1])
    two = RequestMetrics().snapshot((), HOOKS)
    merged = merge_snapshots([one, two])
    assert {s[0]: s[1:] for s in merged.hooks} == {
        "hooks/auth.py:check": (20, 2, 4, 6, 0.5),
        'odd "label"\\': (1, 0, 0, 0, 1e-05),
    }
    assert MetricsSnapshot.from_tuple(merged.as_tuple()) == merged
