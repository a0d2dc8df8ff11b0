"""Rate-limit buckets per client (`core._ruleengine`): an IPv6 client is keyed by its /64,
and no IPv6 /64 shares a bucket with an IPv4 address.

A /64 prefix and an IPv4 address are both small integers: 0:0:c000:201::/64 has the prefix
0xc0000201, which is 192.0.2.1. Without the offset between the two spaces, either client
could spend the other's tokens (and an IPv6 attacker choose whom to starve).
"""

from __future__ import annotations

from trioproxy.config._config import settings_from_bytes
from trioproxy.core._requestview import request_view
from trioproxy.core._ruleengine import RuleEngine

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
