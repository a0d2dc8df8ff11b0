"""The bytes a client gets of an origin's response head, where the head goes out as h11's own
fields (no rule or hook: `ResponseFields.lowered`) and where a response-header rule or a hook
reads and edits the (name, value) pairs made lazily from them (`ResponseFields.headers`): the
fields the origin's Connection names, its Keep-Alive and its X-Request-ID never reach the
client, the edits always do, and the other fields arrive once each, in the origin's order."""

from __future__ import annotations

import trio
import trio.testing

from trioproxy.config._config import settings_from_bytes
from trioproxy.config._settings import Settings
from trioproxy.core._rulemodel import HookAction, Rule, RuleSet
from trioproxy.hooks import Exchange, ResponseHead

from ..memnet import memory_proxy
from ..support import parse_responses

HEAD = (
    b"HTTP/1.1 200 OK\r\nX-First: 1\r\nFoo: secret\r\nContent-Length: 2\r\n"
    b"X-Request-ID: from-origin\r\nConnection: keep-alive, FOO\r\nKeep-Alive: timeout=5\r\n"
    b"Content-Type: text/plain\r\nX-Last: 2\r\n\r\nok"
)


async def _origin(stream: trio.abc.HalfCloseableStream) -> None:
    """Answers each request (whole in one read: a small GET) with HEAD."""
    while await stream.receive_some(65536):
        await stream.send_all(HEAD)


class _Edits:
    async def response(self, exchange: Exchange, response: ResponseHead) -> None:
        exchange.set_response_header("X-Hook", "h")
        exchange.set_response_header("X-First", "edited")


async def _received(
    settings: Settings, hooks: dict[str, object] | None = None
) -> list[tuple[bytes, bytes]]:
    async with memory_proxy(settings, origin=_origin, hooks=hooks) as proxy:
        async with proxy.client() as client:
            await client.stream.send_all(b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            received = b""
            while data := await client.stream.receive_some(65536):
                received += data
        await proxy.logged(1)
        rid = proxy.records[0].request_id
    (reply,) = parse_responses(received)
    assert (reply.status, reply.body) == (200, b"ok")
    names = [name.lower() for name, _ in reply.headers]
    assert b"foo" not in names and b"keep-alive" not in names
    assert [value for name, value in reply.headers if name.lower() == b"x-request-id"] == [
        rid.encode() if isinstance(rid, str) else rid
    ]
    assert names.count(b"content-length") == 1 and names.count(b"x-last") == 1
    return reply.headers


async def test_an_unedited_head_goes_out_without_the_fields_connection_names(
    autojump_clock: trio.testing.MockClock,
) -> None:
    headers = await _received(Settings())
    assert (b"X-First", b"1") in headers and (b"Content-Type", b"text/plain") in headers


async def test_a_response_header_rule_edits_what_the_client_gets(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rules = b'[[rules]]\nmatch.path_prefix = "/"\nresponse_headers.set = { X-Rule = "r" }\n'
    headers = await _received(settings_from_bytes(rules, file="t.toml"))
    assert (b"X-Rule", b"r") in headers and (b"X-First", b"1") in headers


async def test_a_hook_edits_what_the_client_gets(
    autojump_clock: trio.testing.MockClock,
) -> None:
    action = HookAction("", "edits", 1.0, 0)
    hooked = Settings(rules=RuleSet((Rule(position=1, actions=(action,)),)))
    headers = await _received(hooked, {"edits": _Edits()})
    assert (b"X-Hook", b"h") in headers
    assert [v for n, v in headers if n.lower() == b"x-first"] == [b"edited"]
