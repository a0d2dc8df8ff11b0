"""The journal's response head is the head as sent, the Connection: close the proxy adds on a
connection's last response included (its pairs are made from the fields only when the journal
is on, after that field is added)."""

from __future__ import annotations

import trio
import trio.testing

from ..memnet import scripted_proxy
from ..support import make_settings


async def test_the_journal_shows_the_connection_close_the_client_got(
    autojump_clock: trio.testing.MockClock,
) -> None:
    settings = make_settings(admin__journal_size=2, limits__keepalive_requests=2)
    async with scripted_proxy(settings) as (proxy, _origin):
        journal = proxy.server.journal
        assert journal is not None
        async with proxy.client() as client:
            kept = await client.request(b"GET", b"/small")
            last = await client.request(b"GET", b"/small")  # its second: the last allowed
        assert kept.header(b"connection") is None
        assert last.header(b"connection") == b"close"
        first, second = journal
        assert first.response_headers is not None and second.response_headers is not None
        assert not any(name.lower() == "connection" for name, _ in first.response_headers)
        assert ("Connection", "close") in second.response_headers
        assert ("Via", "1.1 trioproxy") in second.response_headers
        sent = [(name.decode(), value.decode()) for name, value in last.headers]
        assert list(second.response_headers) == sent
