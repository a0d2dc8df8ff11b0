"""examples/hooks (the how-to's worked hooks) through the real engine on the memory network:
what docs/how-to/hooks.md says each one does, it does."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import h11
import trio
import trio.testing

from trioproxy.config._config import load_settings
from trioproxy.engine._memory import MemoryNetwork

from ..memnet import MemoryProxy, MemoryStream, memory_origin, memory_proxy
from ..support import Reply

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "hooks"


class EchoOrigin:
    """Answers with the target and headers it received as JSON; /status/N answers N."""

    def __init__(self) -> None:
        self.seen: list[dict[str, object]] = []

    async def __call__(self, stream: MemoryStream) -> None:
        conn = h11.Connection(h11.SERVER)
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some()
                if not data:
                    return
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                target = event.target.decode()
                headers = {k.decode(): v.decode() for k, v in event.headers.raw_items()}
                self.seen.append({"target": target, "headers": headers})
            elif isinstance(event, h11.EndOfMessage):
                status = int(target.split("/")[2]) if target.startswith("/status/") else 200
                body = json.dumps(self.seen[-1]).encode()
                length = [(b"Content-Length", b"%d" % len(body))]
                out = conn.send(h11.Response(status_code=status, headers=length))
                await stream.send_all(out + conn.send(h11.Data(data=body)))
                await stream.send_all(conn.send(h11.EndOfMessage()))
                conn.start_next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                return


@asynccontextmanager
async def examples() -> AsyncIterator[tuple[MemoryProxy, EchoOrigin]]:
    network, origin = MemoryNetwork(), EchoOrigin()
    settings = load_settings(EXAMPLES)
    async with memory_origin(network, origin), memory_proxy(settings, network) as proxy:
        yield proxy, origin


async def get(proxy: MemoryProxy, target: bytes, *headers: tuple[bytes, bytes]) -> Reply:
    async with proxy.client() as client:
        return await client.request(b"GET", target, list(headers))


async def test_the_token_check_answers_401_and_lets_good_tokens_through(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with examples() as (proxy, origin):
        denied = await get(proxy, b"/api/orders")
        wrong = await get(proxy, b"/api/orders", (b"Authorization", b"Bearer nope"))
        allowed = await get(proxy, b"/api/orders", (b"Authorization", b"Bearer let-me-in"))
    assert (denied.status, wrong.status, allowed.status) == (401, 401, 200)
    assert denied.header(b"www-authenticate") == b'Bearer realm="api"'
    assert len(origin.seen) == 1
    headers = origin.seen[0]["headers"]
    assert isinstance(headers, dict)
    assert headers.get("X-Authenticated") == "yes" and "Authorization" not in headers


async def test_the_ab_split_rewrites_by_cookie_and_sets_one_when_missing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with examples() as (proxy, origin):
        b = await get(proxy, b"/shop/cart?x=1", (b"Cookie", b"ab=b"))
        fresh = await get(proxy, b"/shop")
        await proxy.logged(2)
    assert b.status == 200 and b.header(b"set-cookie") is None
    assert origin.seen[0]["target"] == "/b/shop/cart?x=1"
    cookie = fresh.header(b"set-cookie")
    assert cookie is not None and cookie.startswith(b"ab=")
    bucket = cookie[3:4].decode()
    assert origin.seen[1]["target"] == f"/{bucket}/shop/"
    assert ("ab_bucket", "b") in proxy.records[0].extra


async def test_the_site_hook_times_responses_turns_5xx_into_json_and_logs_a_header(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with examples() as (proxy, _origin):
        ok = await get(proxy, b"/page", (b"X-Client-Version", b"ios-4.2"))
        failed = await get(proxy, b"/status/502")
        await proxy.logged(2)
    assert ok.status == 200 and (ok.header(b"server-timing") or b"").startswith(b"proxy;dur=")
    assert failed.status == 502 and failed.header(b"content-type") == b"application/json"
    assert failed.json() == {
        "error": "upstream_failed",
        "request_id": (failed.header(b"x-request-id") or b"").decode(),
    }
    assert ("client_version", "ios-4.2") in proxy.records[0].extra
    assert ("client_version", "-") in proxy.records[1].extra
