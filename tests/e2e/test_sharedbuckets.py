"""Rate limits shared by workers: the shared table agrees with TokenBuckets, and two workers
of the real command give a client one bucket between them."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trioproxy.core._ratelimit import TokenBuckets
from trioproxy.core._rulemodel import RateLimit
from trioproxy.core._sharedbuckets import SharedTable, create

from ..cli_support import cli_proxy, wait_for_exit
from ..support import Client

pytestmark = pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="Linux only")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@given(
    st.lists(
        st.tuples(st.integers(0, 5), st.floats(0, 3)),  # (client, seconds since the last)
        max_size=60,
    ),
    st.integers(1, 5),
    st.sampled_from([0.5, 1.0, 4.0]),
)
def test_shared_buckets_decide_as_token_buckets(
    steps: list[tuple[int, float]], burst: int, rate: float
) -> None:
    clock = FakeClock()
    fd = create()
    try:
        shared = SharedTable(fd, clock=clock).buckets(0, RateLimit(rate, burst, 100))
        local = TokenBuckets(rate, burst)
        for client, elapsed in steps:
            clock.now += elapsed
            assert shared.take(client, 0.0) == pytest.approx(local.take(client, clock.now))
    finally:
        os.close(fd)


def test_two_mappings_share_one_bucket_and_rules_do_not() -> None:
    clock = FakeClock()
    fd = create()
    try:
        limit = RateLimit(1.0, 3, 100)
        one = SharedTable(fd, clock=clock).buckets(0, limit)
        two = SharedTable(fd, clock=clock).buckets(0, limit)  # another worker's mapping
        other_rule = SharedTable(fd, clock=clock).buckets(1, limit)
        assert [one.take(7, 0), two.take(7, 0), one.take(7, 0)] == [0.0, 0.0, 0.0]
        assert two.take(7, 0) == pytest.approx(1.0)  # the fourth is refused, whoever asks
        assert one.take("not-an-address", 0) == 0.0
        assert other_rule.take(7, 0) == 0.0
    finally:
        os.close(fd)


async def test_two_workers_enforce_one_bucket_per_client(
    origin: tuple[str, int], tmp_path: Path
) -> None:
    (tmp_path / "trioproxy.toml").write_text(
        "[[rules]]\nrate_limit = { rate = 0.001, burst = 10 }\n"
    )
    statuses = []
    async with cli_proxy(origin, "--workers", "2", config_dir=str(tmp_path)) as proxy:
        # A connection each: the workers take turns at the one accept queue.
        for _ in range(30):
            async with Client.connect(proxy.address) as client:
                reply = await client.request(b"GET", b"/", [(b"Connection", b"close")])
                statuses.append(reply.status)
        proxy.process.send_signal(signal.SIGTERM)
        assert await wait_for_exit(proxy.process) == 0
    # Per-process buckets would let up to 20 through (10 per worker).
    assert statuses.count(200) == 10 and statuses.count(429) == 20
