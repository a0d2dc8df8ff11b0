"""forwarding.trusted_proxies: a peer outside it cannot claim another client address with
True-Client-IP or X-Forwarded-For (rules, rate limits, remote_addr, what goes upstream).
The plan for such a peer, without sockets: unit/test_headers.py."""

from __future__ import annotations

import trioproxy
from trioproxy.config._config import settings_from_bytes
from trioproxy.config._settings import Settings

from ..support import Client, Reply, echo_origin

SPOOF = [(b"True-Client-IP", b"203.0.113.7"), (b"X-Forwarded-For", b"203.0.113.7")]


def _seen(reply: Reply) -> dict[str, list[str]]:
    """The headers the origin received, by lower-case name."""
    seen: dict[str, list[str]] = {}
    for name, value in reply.json()["headers"]:
        seen.setdefault(name.lower(), []).append(value)
    return seen


def _settings(trusted: str, rules: bytes = b"") -> Settings:
    text = b"[forwarding]\ntrusted_proxies = " + trusted.encode() + b"\n" + rules
    return settings_from_bytes(text, file="t.toml")


ALLOW_ONLY_THE_OFFICE = b'[[rules]]\nmatch.path_prefix = "/admin/"\nallow = ["203.0.113.0/24"]\n'


async def test_an_untrusted_peer_cannot_walk_past_an_allow_list() -> None:
    settings = _settings('["192.0.2.0/24"]', ALLOW_ONLY_THE_OFFICE)  # loopback is not in it
    async with echo_origin() as origin:
        async with trioproxy.running(origin, settings, capture_access_log=True) as proxy:
            async with Client.connect(proxy.address) as client:
                spoofed = await client.request(b"GET", b"/admin/", SPOOF)
                plain = await client.request(b"GET", b"/", SPOOF)
    assert spoofed.status == 403
    assert plain.status == 200
    seen = _seen(plain)
    assert seen["true-client-ip"] == ["127.0.0.1"]  # the peer, not the claim
    assert seen["x-forwarded-for"] == ["127.0.0.1"]
    assert [line["remote_addr"] for line in proxy.access_log] == ["127.0.0.1", "127.0.0.1"]
    assert proxy.access_log[1]["x_forwarded_for"] == "203.0.113.7"  # what was received


async def test_a_trusted_peer_is_believed() -> None:
    settings = _settings('["127.0.0.0/8"]', ALLOW_ONLY_THE_OFFICE)
    async with echo_origin() as origin:
        async with trioproxy.running(origin, settings, capture_access_log=True) as proxy:
            async with Client.connect(proxy.address) as client:
                reply = await client.request(b"GET", b"/admin/", SPOOF)
    assert reply.status == 200
    seen = _seen(reply)
    assert seen["true-client-ip"] == ["203.0.113.7"]
    assert seen["x-forwarded-for"] == ["203.0.113.7, 127.0.0.1"]
    assert proxy.access_log[0]["remote_addr"] == "203.0.113.7"


async def test_an_untrusted_peer_cannot_dodge_a_rate_limit_with_fresh_addresses() -> None:
    limit = b'[[rules]]\nmatch.path_prefix = "/api/"\nrate_limit = { rate = 1, burst = 2 }\n'
    async with echo_origin() as origin:
        async with trioproxy.running(origin, _settings("[]", limit)) as proxy:
            async with Client.connect(proxy.address) as client:
                statuses = [
                    (
                        await client.request(
                            b"GET", b"/api/", [(b"True-Client-IP", b"198.51.100.%d" % i)]
                        )
                    ).status
                    for i in range(4)
                ]
    assert statuses[:2] == [200, 200]
    assert 429 in statuses[2:]
