"""Attacks on "checked once": heads go to h11 as known-valid fields (`_h11.sendable`, with
``_parsed=True``), so h11 no longer checks what the proxy sends. Each test feeds one source
of a sent name, value or status something h11 would have refused, and asserts that it is
refused where it enters, or never reaches the other side. Origins here are byte-level (what
arrives is asserted as bytes), on the memory network under the autojump clock.
"""

from __future__ import annotations

import dataclasses
import enum

import pytest
import trio
import trio.testing

from trioproxy.config._config import ConfigError, settings_from_bytes
from trioproxy.config._faultconfig import parse_runtime_fault
from trioproxy.config._settings import Forwarding, Settings
from trioproxy.core._headers import ForwardingRules, plan_request
from trioproxy.hooks._api import Exchange, HookError, Request
from trioproxy.testing import Fault, FaultKind, MemoryStream, memory_world

GET = b"GET / HTTP/1.1\r\nHost: test.example\r\n\r\n"
# Bytes h11 refuses in a field it sends, and our strict checks refuse in one it receives.
BAD_VALUES = ["a\r\nInjected: 1", "a\nb", "a\rb", "a\x00b", "a\x01b", "a\x7fb"]


async def _exchange(stream: MemoryStream, data: bytes) -> bytes:
    """Send ``data``; what comes back until one whole head (and a short body) arrived."""
    await stream.send_all(data)
    received = bytearray()
    with trio.move_on_after(30):
        while b"\r\n\r\n" not in received or not received.endswith(b"\n"):
            try:
                chunk = await stream.receive_some(65536)
            except trio.BrokenResourceError:
                break
            if not chunk:
                break
            received += chunk
    return bytes(received)


class RawOrigin:
    """Notes the bytes of each request; answers each with ``answer`` as it is."""

    def __init__(self, answer: bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") -> None:
        self.answer = answer
        self.received = bytearray()

    async def __call__(self, stream: MemoryStream) -> None:
        while True:
            try:
                chunk = await stream.receive_some(65536)
            except trio.BrokenResourceError:
                return
            if not chunk:
                return
            self.received += chunk
            if b"\r\n\r\n" in chunk or chunk.endswith(b"0\r\n\r\n"):
                await stream.send_all(self.answer)


# --- Holes found: sources no loader checked -----------------------------------------------------


@pytest.mark.parametrize("via", ["x\r\nContent-Length: 5", "a b", "x\x00", "x,y"])
async def test_a_via_name_in_settings_made_in_code_is_refused_not_sent(
    autojump_clock: trio.testing.MockClock, via: str
) -> None:
    # The embedding API takes a Settings made in code, which no loader checked; the Via
    # pseudonym then went upstream and downstream unchecked: a CR LF injected fields
    # (a Content-Length on a GET: request smuggling).
    settings = dataclasses.replace(Settings(), forwarding=Forwarding(via_name=via))
    origin = RawOrigin()
    with pytest.raises(ValueError, match="via_name must be an HTTP token"):
        async with memory_world(origin=origin, settings=settings) as world:
            async with world.open() as stream:
                await _exchange(stream, GET)
    assert origin.received == b""


def test_via_pseudonyms_that_are_tokens_or_none_are_taken() -> None:
    assert ForwardingRules(via=b"edge-1.example").via_value(b"1.1") == b"1.1 edge-1.example"
    assert ForwardingRules(via=b"").via == b""


@pytest.mark.parametrize("status", [503.5, 503.0, "503", True])
async def test_a_fault_made_in_code_with_a_status_that_is_no_int_is_refused(
    autojump_clock: trio.testing.MockClock, status: object
) -> None:
    # Its status went to h11 unchecked: h11-mypyc raised an internal error per request,
    # h11 answered 502 as if the origin had failed.
    async with memory_world(origin=RawOrigin()) as world:
        with pytest.raises(ValueError, match="status"):
            async with world.fault(Fault(FaultKind.ANSWER, status=status)):  # type: ignore[arg-type]
                pass
        async with world.fault(Fault(FaultKind.ANSWER, status=418)), world.open() as stream:
            assert (await _exchange(stream, GET)).startswith(b"HTTP/1.1 418 ")


# --- Attacks the checks already stop (they must keep stopping them) -----------------------------


@pytest.mark.parametrize("value", BAD_VALUES)
def test_a_hook_cannot_put_a_control_character_in_any_field(value: str) -> None:
    exchange = Exchange(Request("GET", "/", "/", (), "192.0.2.1", "http", "id"))
    for edit in (
        exchange.set_request_header,
        exchange.add_request_header,
        exchange.set_response_header,
        exchange.add_response_header,
    ):
        with pytest.raises(HookError):
            edit("X-Attack", value)
    with pytest.raises(HookError):
        exchange.respond(200, "body", {"X-Attack": value})
    with pytest.raises(HookError):
        exchange.rewrite("/" + value)


@pytest.mark.parametrize(
    "name",
    ["", "X Attack", "X:Attack", "X\r\nY", "Content-Length", "transfer-encoding", "Connection",
     "Keep-Alive", "TE", "Trailer", "Upgrade", "Proxy-Connection"],
)  # fmt: skip
def test_a_hook_cannot_send_a_non_token_framing_or_hop_by_hop_name(name: str) -> None:
    exchange = Exchange(Request("GET", "/", "/", (), "192.0.2.1", "http", "id"))
    for edit in (exchange.set_request_header, exchange.add_response_header):
        with pytest.raises(HookError):
            edit(name, "1")
    with pytest.raises(HookError):
        exchange.respond(200, "", [(name, "1")])


def test_a_hook_answer_is_framed_by_the_proxy_and_its_values_trimmed() -> None:
    exchange = Exchange(Request("GET", "/", "/", (), "192.0.2.1", "http", "id"))
    exchange.respond(200, "hi", {"X-A": " padded\t"})
    answer = exchange._answer
    assert answer is not None
    assert (b"X-A", b"padded") in answer.headers
    assert (b"Content-Length", b"2") in answer.headers
    with pytest.raises(HookError):
        exchange.respond(101)  # no 1xx answer: its fields would go out as a 101's


@pytest.mark.parametrize(
    "table",
    [
        'request_headers.set = { X-A = "a\\r\\nInjected: 1" }',
        'request_headers.add = { X-A = "a\\u0000" }',
        'response_headers.set = { X-A = "a\\nb" }',
        'response_headers.add = { "X A" = "1" }',
        'response_headers.set = { Content-Length = "0" }',
        'request_headers.set = { Transfer-Encoding = "chunked" }',
        'request_headers.add = { Host = "evil.example" }',
        'respond = { status = 200, headers = { X-A = "\\r\\n" } }',
        'respond = { status = 200, headers = { Content-Length = "9" } }',
        'redirect = { to = "/a\\r\\nInjected: 1" }',
        'redirect = { to = "https://x.example/ a" }',
    ],
)
def test_rule_header_edits_answers_and_redirects_are_checked_at_load(table: str) -> None:
    with pytest.raises(ConfigError):
        settings_from_bytes(b"[[rules]]\n" + table.encode() + b"\n", file="trioproxy.toml")


def test_via_name_in_a_file_is_checked_at_load() -> None:
    with pytest.raises(ConfigError):
        settings_from_bytes(b'[forwarding]\nvia_name = "a\\r\\nb"\n', file="trioproxy.toml")


def _plan(headers: list[tuple[bytes, bytes]], **keys: object) -> list[tuple[bytes, bytes]]:
    options: dict[str, object] = {
        "peer_ip": b"192.0.2.9",
        "rules": ForwardingRules(),
        "upstream_authority": b"origin.test:80",
        "max_header_count": 100,
        **keys,
    }
    return plan_request(b"GET", b"/", headers, b"1.1", **options).headers  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "request_id", [b"a b", b"a,b", b"\x80\xff", b"x" * 129, b"a\tb", b"<script>"]
)
def test_a_request_id_that_is_no_plain_id_is_replaced_by_hex(request_id: bytes) -> None:
    sent = dict(_plan([(b"Host", b"h"), (b"X-Request-ID", request_id)]))
    assert sent[b"X-Request-ID"] != request_id
    assert len(sent[b"X-Request-ID"]) == 32
    assert int(sent[b"X-Request-ID"], 16) >= 0


@pytest.mark.parametrize("value", [b"a\x01b", b"a\x7fb", b"a\x0bb", b"a\x0cb"])
async def test_a_control_character_from_a_client_reaches_no_origin(
    autojump_clock: trio.testing.MockClock, value: bytes
) -> None:
    # In a field (h11's parser takes \x01 and \x7f), in X-Forwarded-For from a trusted peer
    # (merged with the peer's address), in X-Request-ID, and in a trailer.
    origin = RawOrigin()
    async with memory_world(origin=origin) as world:
        for field in (b"X-A", b"X-Forwarded-For", b"X-Request-ID", b"True-Client-IP"):
            async with world.open() as stream:
                head = b"GET / HTTP/1.1\r\nHost: h\r\n%s: %s\r\n\r\n" % (field, value)
                assert (await _exchange(stream, head)).startswith(b"HTTP/1.1 400 ")
        async with world.open() as stream:
            chunked = (
                b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"1\r\nx\r\n0\r\nX-T: %s\r\n\r\n" % value
            )
            reply = await _exchange(stream, chunked)
            assert not reply.startswith(b"HTTP/1.1 200 ")
    assert value not in origin.received


@pytest.mark.parametrize("value", [b"a\x01b", b"a\x7fb", b"a-good-value"])
@pytest.mark.parametrize(
    "answer",
    [
        # a 1xx, then the response
        b"HTTP/1.1 103 Early Hints\r\nLink: %s\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        # a field of the response
        b"HTTP/1.1 200 OK\r\nX-A: %s\r\nContent-Length: 2\r\n\r\nok",
        # a trailer of the response
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-T: %s\r\n\r\n",
        # the reason phrase
        b"HTTP/1.1 200 O%sK\r\nContent-Length: 2\r\n\r\nok",
    ],
)
async def test_a_control_character_from_the_origin_reaches_no_client(
    autojump_clock: trio.testing.MockClock, value: bytes, answer: bytes
) -> None:
    async with memory_world(origin=RawOrigin(answer % value)) as world:
        async with world.open() as stream:
            reply = await _exchange(stream, GET)
    assert reply.startswith(b"HTTP/1.1 ")
    # (The control: a good value goes through, in the reason phrase too.)
    assert (value in reply) is (value == b"a-good-value")


async def test_obs_fold_from_a_client_is_refused_not_unfolded_upstream(
    autojump_clock: trio.testing.MockClock,
) -> None:
    origin = RawOrigin()
    async with memory_world(origin=origin) as world:
        async with world.open() as stream:
            reply = await _exchange(stream, b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400 ")
    assert origin.received == b""


class _Status(int, enum.Enum):  # (not IntEnum: its str() is its name, "_Status.OK")
    OK = 200
    TEAPOT = 418


async def test_a_fault_made_in_code_with_an_int_enum_status_answers_with_its_number(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # h11 rebuilds a final response it sends (its framing clean-up), with int(status).
    async with memory_world(origin=RawOrigin()) as world:
        async with world.fault(Fault(FaultKind.ANSWER, status=_Status.TEAPOT)):
            async with world.open() as stream:
                assert (await _exchange(stream, GET)).startswith(b"HTTP/1.1 418 ")


async def test_a_redirect_built_from_captures_and_variables_injects_no_field(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The Location is made per request from the target (h11 checked it) and the cleaned
    # host: percent-escapes of CR LF stay escapes (only unreserved ones are decoded).
    settings = settings_from_bytes(
        b'[[rules]]\nmatch.path_regex = "^/r/(.*)$"\n'
        b'redirect = { to = "https://$host/new/$1?from=$request_uri" }\n',
        file="trioproxy.toml",
    )
    async with memory_world(origin=RawOrigin(), settings=settings) as world:
        async with world.open() as stream:
            reply = await _exchange(
                stream, b"GET /r/%0d%0aSet-Cookie:%20a=b HTTP/1.1\r\nHost: test.example\r\n\r\n"
            )
    head = reply.partition(b"\r\n\r\n")[0].split(b"\r\n")
    assert head[0].startswith(b"HTTP/1.1 302 ")
    assert not any(line.lower().startswith(b"set-cookie") for line in head)
    (location,) = [line for line in head if line.lower().startswith(b"location:")]
    assert location == (
        b"Location: https://test.example/new/%0D%0ASet-Cookie:%20a=b"
        b"?from=/r/%0d%0aSet-Cookie:%20a=b"
    )


@pytest.mark.parametrize(
    "trailer",
    [b"X-T: a\r\n b\r\n", b"X-T: a\nX-U: b\r\n", b"X-T : a\r\n", b": a\r\n", b"X-T: ok\r\n"],
)
async def test_a_malformed_trailer_section_from_a_client_reaches_no_origin(
    autojump_clock: trio.testing.MockClock, trailer: bytes
) -> None:
    origin = RawOrigin()
    if trailer == b"X-T: ok\r\n":  # the control: a well-formed trailer goes through
        async with memory_world(origin=origin) as world, world.open() as stream:
            await _exchange(
                stream,
                b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"1\r\nx\r\n0\r\n" + trailer + b"\r\n",
            )
        assert b"\r\nX-T: ok\r\n" in origin.received
        return
    async with memory_world(origin=origin) as world:
        async with world.open() as stream:
            reply = await _exchange(
                stream,
                b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"1\r\nx\r\n0\r\n" + trailer + b"\r\n",
            )
    assert not reply.startswith(b"HTTP/1.1 200 ")
    assert b"X-T" not in origin.received and b"X-U" not in origin.received


@pytest.mark.parametrize("status", [503.5, "503", True, None])
def test_a_runtime_fault_over_the_admin_api_takes_an_int_status_only(status: object) -> None:
    problems: list[str] = []
    parsed = parse_runtime_fault(
        {"kind": "answer", "status": status}, lambda key, message: problems.append(key)
    )
    assert parsed is None and problems
