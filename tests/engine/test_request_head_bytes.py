"""The request head the origin gets, byte for byte, after every kind of request-header edit:
the plan's fields go to h11 as they are (name, lower-case name, value), so each case is held
to a reference made the way it was made before that: the frozen planner's (name, value)
pairs (`unit/headers_before.py`), the edits applied to the pairs (`apply_header_ops`), and
h11 (the reference parser, validating everything) writing the head. Rules' set/add/remove,
a hook's edits, both, a retry on a fresh connection, a body, an Expect: 100-continue the
proxy answers itself, a hook's body re-framed as chunked; the journal's note of the
forwarded fields too. On the memory network under the autojump clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import h11
import pytest
import trio
import trio.testing

from trioproxy.config._settings import Settings
from trioproxy.core._headers import ForwardingRules
from trioproxy.core._rulemodel import (
    HeaderOp,
    HookAction,
    OpKind,
    Rule,
    RuleSet,
    apply_field_ops,
    apply_header_ops,
)
from trioproxy.hooks import Exchange

from ..memnet import MemoryStream, memory_proxy
from ..unit import headers_before

PEER = "198.51.100.7"  # the memory network's client address

# A browser's request, with fields the plan drops (Connection), merges (X-Forwarded-For),
# keeps the client's value of (a plain X-Request-ID: the heads are then fixed) and notes.
BROWSER = (
    b"GET /page?x=1 HTTP/1.1\r\n"
    b"Host: shop.example\r\n"
    b"Connection: keep-alive\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\n"
    b"Accept: text/html,*/*;q=0.8\r\n"
    b"X-Keep: a\r\n"
    b"Accept-Language: en-US,en;q=0.9\r\n"
    b"X-Drop: 1\r\n"
    b"X-Forwarded-For: 203.0.113.9\r\n"
    b"Cookie: session=abc; theme=dark\r\n"
    b"X-Request-ID: rid-0001\r\n"
    b"Referer: https://shop.example/\r\n"
    b"X-Drop: 2\r\n"
    b"Sec-Fetch-Mode: navigate\r\n"
    b"\r\n"
)

RULE_OPS = (
    HeaderOp(OpKind.SET, b"X-Keep", b"ruled"),
    HeaderOp(OpKind.ADD, b"X-Tag", b"a"),
    HeaderOp(OpKind.ADD, b"X-Tag", b"b"),
    HeaderOp(OpKind.REMOVE, b"x-drop"),
    HeaderOp(OpKind.SET, b"X-New", b"1"),  # (a set of a field not there: added at the end)
)
# What `Hook.request` asks for, as the hook API records it.
HOOK_OPS = (
    HeaderOp(OpKind.SET, b"x-keep", b"hooked"),
    HeaderOp(OpKind.ADD, b"X-Hook", b"1"),
    HeaderOp(OpKind.REMOVE, b"Cookie"),
    HeaderOp(OpKind.SET, b"Host", b"origin.internal"),
)


class Hook:
    """Edits every request's fields as `HOOK_OPS` says; with ``body``, re-frames the request
    body (the proxy then sends it chunked)."""

    def __init__(self, body: bool = False) -> None:
        if body:
            self.request_body = self._body

    async def request(self, exchange: Exchange) -> None:
        exchange.set_request_header("x-keep", "hooked")
        exchange.add_request_header("X-Hook", "1")
        exchange.remove_request_header("Cookie")
        exchange.set_request_header("Host", "origin.internal")

    async def _body(self, exchange: Exchange, chunk: bytes, end: bool) -> bytes:
        return chunk.upper()


def _settings(*, rules: bool = False, hook: bool = False, journal: bool = False) -> Settings:
    built = []
    if rules:
        built.append(Rule(position=1, request_ops=RULE_OPS))
    if hook:
        built.append(Rule(position=len(built) + 1, actions=(HookAction("", "hook", 1.0, 0),)))
    settings = Settings(rules=RuleSet(tuple(built)))
    if journal:
        settings = replace(settings, admin=replace(settings.admin, journal_size=10))
    return settings


def _reference(
    raw: bytes,
    *edits: Sequence[HeaderOp],
    without_expect: bool = False,
    chunked: bool = False,
) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """The head the origin got before the plan carried h11's fields, and its (name, value)
    pairs: the frozen planner's pairs, ``edits`` applied in order, then the proxy's own
    changes (the Expect it answered, the re-framing), written by h11 validating them."""
    server = h11.Connection(h11.SERVER)
    server.receive_data(raw)
    request = server.next_event()
    assert isinstance(request, h11.Request)
    plan = headers_before.plan_request_of(
        request.method,
        request.target,
        [(name, name.lower(), value) for name, value in request.headers.raw_items()],
        request.http_version,
        peer_ip=PEER.encode(),
        rules=ForwardingRules(),
        upstream_authority=b"origin:80",
        max_header_count=100,
        make_request_id=lambda: b"never-needed",
    )
    headers = plan.headers
    for ops in edits:
        headers = apply_header_ops(headers, ops)
    if without_expect:
        headers = [(k, v) for k, v in headers if k.lower() != b"expect"]
    if chunked:
        framing = (b"content-length", b"transfer-encoding")
        headers = [(k, v) for k, v in headers if k.lower() not in framing]
        headers.append((b"Transfer-Encoding", b"chunked"))
    client = h11.Connection(h11.CLIENT)
    head = client.send(h11.Request(method=request.method, target=plan.target, headers=headers))
    assert head is not None
    return head, headers


@dataclass
class HeadOrigin:
    """Notes every request head (and body) as bytes; answers each with "ok". With
    ``stale``, its first connection answers once and then hangs up on the next request
    without a byte (a keep-alive race lost: the proxy retries on a fresh connection)."""

    stale: bool = False
    heads: list[bytes] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    connections: int = 0

    async def __call__(self, stream: MemoryStream) -> None:
        self.connections += 1
        first, answered = self.connections == 1, 0
        received = b""
        while True:
            while b"\r\n\r\n" not in received:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return
                received += chunk
            head, received = received.split(b"\r\n\r\n", 1)
            self.heads.append(head + b"\r\n\r\n")
            body, received = await _body(stream, head.lower(), received)
            self.bodies.append(body)
            if self.stale and first and answered:
                await stream.aclose()
                return
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            answered += 1


async def _body(stream: MemoryStream, head: bytes, received: bytes) -> tuple[bytes, bytes]:
    """The body a head announces, as sent (chunked: with its framing); the bytes past it."""
    if b"transfer-encoding: chunked" in head:
        while not received.endswith(b"0\r\n\r\n"):
            received += await stream.receive_some(65536)
        return received, b""
    length = (
        int(head.split(b"content-length: ")[1].split(b"\r\n")[0])
        if b"content-length" in head
        else 0
    )
    while len(received) < length:
        received += await stream.receive_some(65536)
    return received[:length], received[length:]


async def _send(stream: MemoryStream, data: bytes, answers: int = 1) -> bytes:
    """Send ``data``; read until ``answers`` "ok" answers came back."""
    await stream.send_all(data)
    got = b""
    while got.count(b"\r\n\r\nok") < answers:
        chunk = await stream.receive_some(65536)
        assert chunk, f"the proxy closed the connection: {got!r}"
        got += chunk
    return got


CASES = [
    pytest.param({}, (), id="as-received"),
    pytest.param({"rules": True}, (RULE_OPS,), id="rules-set-add-remove"),
    pytest.param({"hook": True}, (HOOK_OPS,), id="hook-edits"),
    pytest.param({"rules": True, "hook": True}, (RULE_OPS, HOOK_OPS), id="rules-then-hook"),
]


@pytest.mark.parametrize(("config", "edits"), CASES)
async def test_the_head_sent_is_the_one_made_from_pairs(
    autojump_clock: trio.testing.MockClock,
    config: dict[str, bool],
    edits: tuple[Sequence[HeaderOp], ...],
) -> None:
    origin = HeadOrigin()
    hooks = {"hook": Hook()} if config.get("hook") else None
    async with memory_proxy(_settings(**config), origin=origin, hooks=hooks) as proxy:
        async with proxy.open() as stream:
            await _send(stream, BROWSER)
    expected, _ = _reference(BROWSER, *edits)
    assert origin.heads == [expected]


@pytest.mark.parametrize("hook", [False, True])
async def test_a_retried_request_sends_the_same_head_again(
    autojump_clock: trio.testing.MockClock, hook: bool
) -> None:
    # The second request goes out on the reused connection, which dies before any answer:
    # it goes again, on a fresh one, with the same fields (its edits made once).
    origin = HeadOrigin(stale=True)
    hooks = {"hook": Hook()} if hook else None
    settings = _settings(rules=True, hook=hook)
    async with memory_proxy(settings, origin=origin, hooks=hooks) as proxy:
        async with proxy.open() as stream:
            await _send(stream, BROWSER)
            await _send(stream, BROWSER)
    expected, _ = _reference(BROWSER, RULE_OPS, *([HOOK_OPS] if hook else []))
    assert origin.connections == 2
    assert origin.heads == [expected] * 3


POST = BROWSER.replace(b"GET /page?x=1", b"POST /form").replace(
    b"X-Drop: 2\r\n", b"X-Drop: 2\r\nContent-Length: 5\r\n"
)
EXPECTING = POST.replace(b"Content-Length: 5\r\n", b"Content-Length: 5\r\nExpect: 100-continue\r\n")


async def test_a_request_with_a_body_sends_the_same_head_then_the_body(
    autojump_clock: trio.testing.MockClock,
) -> None:
    origin = HeadOrigin()
    async with memory_proxy(_settings(rules=True), origin=origin) as proxy:
        async with proxy.open() as stream:
            await _send(stream, POST + b"hello")
    expected, _ = _reference(POST, RULE_OPS)
    assert (origin.heads, origin.bodies) == ([expected], [b"hello"])


async def test_an_expectation_the_proxy_answered_is_not_sent_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    origin = HeadOrigin()
    async with memory_proxy(_settings(rules=True), origin=origin) as proxy:
        async with proxy.open() as stream:
            await stream.send_all(EXPECTING)
            interim = await stream.receive_some(65536)
            assert interim.startswith(b"HTTP/1.1 100 ")
            await _send(stream, b"hello")
    expected, _ = _reference(EXPECTING, RULE_OPS, without_expect=True)
    assert b"expect" not in expected.lower()
    assert (origin.heads, origin.bodies) == ([expected], [b"hello"])


async def test_a_body_the_hooks_transform_goes_chunked_under_the_same_fields(
    autojump_clock: trio.testing.MockClock,
) -> None:
    origin = HeadOrigin()
    hooks = {"hook": Hook(body=True)}
    async with memory_proxy(_settings(rules=True, hook=True), origin=origin, hooks=hooks) as proxy:
        async with proxy.open() as stream:
            await _send(stream, POST + b"hello")
    expected, _ = _reference(POST, RULE_OPS, HOOK_OPS, chunked=True)
    assert origin.heads == [expected]
    assert origin.bodies[0].replace(b"\r\n", b"").endswith(b"HELLO0")


@pytest.mark.parametrize("hook", [False, True])
async def test_the_journal_notes_the_fields_sent(
    autojump_clock: trio.testing.MockClock, hook: bool
) -> None:
    origin = HeadOrigin()
    hooks = {"hook": Hook()} if hook else None
    settings = _settings(rules=True, hook=hook, journal=True)
    async with memory_proxy(settings, origin=origin, hooks=hooks) as proxy:
        async with proxy.open() as stream:
            await _send(stream, BROWSER)
        assert proxy.server.journal is not None
        (entry,) = proxy.server.journal
    expected, pairs = _reference(BROWSER, RULE_OPS, *([HOOK_OPS] if hook else []))
    assert origin.heads == [expected]
    assert entry.forwarded_headers == tuple((k.decode(), v.decode()) for k, v in pairs)


# The field edits, on the fields, are the pair edits (any ops, any fields).
_NAMES = [b"Host", b"X-Keep", b"x-keep", b"X-KEEP", b"Cookie", b"X-Tag", b"Via"]
_OPS = [
    HeaderOp(kind, name, value)
    for kind in OpKind
    for name in (b"X-Keep", b"x-keep", b"X-Tag", b"Cookie", b"X-New")
    for value in (b"", b"v")
    if kind is not OpKind.REMOVE or not value
]


@pytest.mark.parametrize("seed", range(40))
def test_field_edits_are_the_pair_edits(seed: int) -> None:
    import random

    chosen = random.Random(seed)
    pairs = [(chosen.choice(_NAMES), b"%d" % i) for i in range(chosen.randrange(8))]
    ops = [chosen.choice(_OPS) for _ in range(chosen.randrange(6))]
    fields = [(name, name.lower(), value) for name, value in pairs]
    edited = apply_field_ops(fields, ops)
    assert [(name, value) for name, _, value in edited] == apply_header_ops(pairs, ops)
    assert all(lname == name.lower() for name, lname, _ in edited)
