"""Rate limits (`core/_ratelimit`): token buckets, and the 429 a `rate_limit` rule answers.
Pure. (Split out of the former test_rules.py.)"""

from __future__ import annotations

import pytest

from trioproxy.config._config import settings_from_bytes
from trioproxy.core._ratelimit import TokenBuckets, retry_after_s
from trioproxy.core._requestview import request_view
from trioproxy.core._ruleengine import PASS, RuleEngine

from .rules_support import engine, rules_of, view

# --- Rate limits -------------------------------------------------------------------------------


def test_buckets_burst_then_refill() -> None:
    buckets = TokenBuckets(2.0, 3)  # 2 per second, bursts of 3
    assert [buckets.take("a", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a", 0.0) == pytest.approx(0.5)
    assert buckets.take("a", 0.25) == pytest.approx(0.25)  # a refusal takes nothing
    assert buckets.take("a", 0.5) == 0.0
    assert buckets.take("a", 0.5) == pytest.approx(0.5)
    assert buckets.take("b", 0.5) == 0.0  # another client has its own bucket
    # Long idle: full again, but never more than burst.
    assert [buckets.take("a", 100.0) for _ in range(4)][-1] > 0


def test_buckets_sustained_rate() -> None:
    buckets = TokenBuckets(10.0, 1)
    granted = sum(buckets.take("a", step / 100) == 0.0 for step in range(1000))  # 10 s
    assert granted == 100


def test_full_buckets_are_forgotten_first() -> None:
    buckets = TokenBuckets(1.0, 2, max_clients=3)
    for key in "abc":
        buckets.take(key, 0.0)  # each half spent, full again at t=1
    buckets.take("d", 0.5)  # table full, none full yet: the stalest ("a") is evicted
    assert (len(buckets), buckets.evictions) == (3, 1)
    buckets.take("e", 5.0)  # b, c and d are full by now: forgotten for free
    assert (len(buckets), buckets.evictions) == (1, 1)


def test_bucket_memory_is_bounded() -> None:
    buckets = TokenBuckets(1.0, 1, max_clients=100)
    for client in range(10_000):
        buckets.take(client, 0.0)
    assert len(buckets) == 100
    assert buckets.take(9_999, 0.0) > 0  # the most recent are the ones remembered


def test_engine_counts_evictions() -> None:
    rules = engine("[[rules]]\nrate_limit = { rate = 1, burst = 1, max_clients = 2 }\n")
    for client in ["192.0.2.1", "192.0.2.2", "192.0.2.3"]:
        assert rules.evaluate(view("/", client=client), 0.0) is PASS
    assert rules.rate_limit_evictions == 1


def test_bucket_arguments() -> None:
    with pytest.raises(ValueError, match="rate_per_s"):
        TokenBuckets(0.0, 1)
    with pytest.raises(ValueError, match="burst"):
        TokenBuckets(1.0, 0)


@pytest.mark.parametrize(
    ("wait_s", "header"), [(0.001, 1), (0.999, 1), (1.0, 1), (1.0000001, 2), (2.5, 3), (60, 60)]
)
def test_retry_after_rounds_up(wait_s: float, header: int) -> None:
    assert retry_after_s(wait_s) == header


RATE_LIMITED = """
[[rules]]
match.path_prefix = "/api/"
rate_limit = { rate = 0.5, burst = 2 }
request_headers.set = { X-Limited = "yes" }
"""


def test_rate_limit_answers_429_with_retry_after() -> None:
    rules = engine(RATE_LIMITED)
    statuses = []
    for _ in range(3):
        decision = rules.evaluate(view("/api/x"), 10.0)
        statuses.append(decision.response.status if decision.response else 200)
    assert statuses == [200, 200, 429]
    refused = rules.evaluate(view("/api/x"), 10.5).response
    assert refused is not None
    assert dict(refused.headers)[b"Retry-After"] == b"2"  # 1.5 s to the next token
    assert rules.evaluate(view("/api/x"), 12.0).request_ops  # a token is back
    assert rules.evaluate(view("/other"), 12.0) is PASS  # not matched: not counted


def test_rate_limit_is_per_client_and_per_ipv6_64() -> None:
    rules = engine(RATE_LIMITED.replace("burst = 2", "burst = 1"))

    def status(client: str, peer: str = "10.0.0.1") -> int:
        response = rules.evaluate(view("/api/", client=client or None, peer=peer), 0.0).response
        return response.status if response else 200

    assert [status("192.0.2.1"), status("192.0.2.1"), status("192.0.2.2")] == [200, 429, 200]
    assert [status("2001:db8:0:1::1"), status("2001:db8:0:1::ffff")] == [200, 429]
    assert status("2001:db8:0:2::1") == 200
    assert [status("", peer="10.0.0.7"), status("", peer="10.0.0.7")] == [200, 429]


def test_each_engine_has_its_own_buckets() -> None:
    rules = rules_of(RATE_LIMITED.replace("burst = 2", "burst = 1"))
    first, second = RuleEngine(rules), RuleEngine(rules)
    assert first.evaluate(view("/api/"), 0.0).response is None
    assert first.evaluate(view("/api/"), 0.0).response is not None
    assert second.evaluate(view("/api/"), 0.0).response is None


def test_allow_list_is_checked_before_tokens_are_spent() -> None:
    rules = engine('[[rules]]\nallow = ["10.0.0.0/8"]\nrate_limit = { rate = 1, burst = 1 }\n')
    for _ in range(3):
        response = rules.evaluate(view("/", client="192.0.2.1"), 0.0).response
        assert response is not None
        assert response.status == 403
    assert rules.evaluate(view("/", client="10.0.0.1"), 0.0).response is None


# From the former test_ratelimit_keys.py: Rate-limit buckets per client (`core._ruleengine`): an
# IPv6 client is keyed by its /64, and no IPv6 /64 shares a bucket with an IPv4 address.

ONE_REQUEST_EACH = b"""
[[rules]]
match.path_prefix = "/"
rate_limit = { rate = 0.001, burst = 1 }
"""
IPV4 = "192.0.2.1"
IPV6_SAME_NUMBER = "0:0:c000:201::1"  # its /64 prefix is the integer of 192.0.2.1


def status(rules: RuleEngine, client: str) -> int:
    raw = [(b"Host", b"example.com"), (b"True-Client-IP", client.encode())]
    view = request_view(b"GET", b"/", raw, "10.9.9.9")
    response = rules.evaluate(view, 0.0).response
    return response.status if response else 200


def fresh_rules() -> RuleEngine:
    return RuleEngine(settings_from_bytes(ONE_REQUEST_EACH, file="t.toml").rules)


def test_an_ipv6_64_does_not_share_a_bucket_with_the_ipv4_address_of_the_same_number() -> None:
    rules = fresh_rules()
    assert [status(rules, IPV4), status(rules, IPV4)] == [200, 429]  # its bucket is empty
    assert status(rules, IPV6_SAME_NUMBER) == 200  # not the IPv4 client's bucket
    assert status(rules, "0:0:c000:201::ffff") == 429  # the same /64: its own bucket, spent


def test_nor_the_other_way_round() -> None:
    rules = fresh_rules()
    assert [status(rules, IPV6_SAME_NUMBER), status(rules, IPV6_SAME_NUMBER)] == [200, 429]
    assert status(rules, IPV4) == 200
