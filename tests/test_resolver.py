"""The upstream name is re-resolved after its TTL, never cached forever, failures never cached.

The resolver under test calls trio.socket.getaddrinfo, the system resolver's front; a stand-in
behind trio's own hook (set_custom_hostname_resolver) plays a DNS whose answer changes.
"""

from __future__ import annotations

import socket

import pytest
import trio
import trio.testing

from trioproxy._errors import UpstreamConnectError
from trioproxy._resolver import Resolver

from .support import Client, make_settings, running_proxy


class ChangingDNS(trio.abc.HostnameResolver):
    def __init__(self, *answers: str | None) -> None:
        self.answers = list(answers)  # None: the name does not resolve
        self.asked = 0

    async def getaddrinfo(self, host, port, family=0, type=0, proto=0, flags=0):  # type: ignore[no-untyped-def, override]
        if host in (b"127.0.0.1", "127.0.0.1"):  # numeric hosts elsewhere in the test
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        self.asked += 1
        answer = self.answers[min(self.asked, len(self.answers)) - 1]
        if answer is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answer, port))]

    async def getnameinfo(self, sockaddr, flags):  # type: ignore[no-untyped-def, override]
        raise NotImplementedError


async def test_answer_is_reused_for_the_ttl_then_asked_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    dns = ChangingDNS("10.0.0.1", "10.0.0.2")
    trio.socket.set_custom_hostname_resolver(dns)
    resolver = Resolver("next-hop", 80, ttl_s=5)
    assert [a for _, a in await resolver.resolve()] == [("10.0.0.1", 80)]
    await trio.sleep(4.9)
    assert [a for _, a in await resolver.resolve()] == [("10.0.0.1", 80)]
    assert dns.asked == 1
    await trio.sleep(0.2)
    assert [a for _, a in await resolver.resolve()] == [("10.0.0.2", 80)]
    assert dns.asked == 2


async def test_failures_are_not_cached(autojump_clock: trio.testing.MockClock) -> None:
    dns = ChangingDNS(None, "10.0.0.3")
    trio.socket.set_custom_hostname_resolver(dns)
    resolver = Resolver("next-hop", 80, ttl_s=5)
    with pytest.raises(UpstreamConnectError, match="cannot resolve next-hop"):
        await resolver.resolve()
    assert [a for _, a in await resolver.resolve()] == [("10.0.0.3", 80)]


async def test_concurrent_lookups_ask_once(autojump_clock: trio.testing.MockClock) -> None:
    dns = ChangingDNS("10.0.0.4")
    trio.socket.set_custom_hostname_resolver(dns)
    resolver = Resolver("next-hop", 80, ttl_s=5)
    async with trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(resolver.resolve)
    assert dns.asked == 1


async def test_proxy_follows_a_changed_answer(origin: tuple[str, int]) -> None:
    """next-hop moves from a dead address to the live origin: after the TTL, requests work."""
    dns = ChangingDNS("127.0.0.2", "127.0.0.1")  # nothing listens on 127.0.0.2:port
    trio.socket.set_custom_hostname_resolver(dns)
    settings = make_settings(upstream__dns_ttl_s=0.0)
    async with running_proxy(("next-hop", origin[1]), settings) as proxy:
        async with Client.connect(proxy.address) as client:
            assert (await client.request(b"GET", b"/")).status == 502
            assert (await client.request(b"GET", b"/")).status == 200
    assert dns.asked == 2
