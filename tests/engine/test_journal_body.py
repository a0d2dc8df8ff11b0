"""The journal's request body prefix (``journal_body_bytes``): the first N bytes of each
request body as received (chunked framing removed), the whole body still forwarded; none kept,
and the upload untouched, when it is 0. On the memory network under the autojump clock."""

from __future__ import annotations

import json
from dataclasses import replace

import trio
import trio.testing

from trioproxy.config._config import settings_from_bytes
from trioproxy.config._settings import Admin
from trioproxy.testing import MemoryWorld, memory_world

from ..support import Client
from .test_hooks import embedded, hooked
from .test_hooks_bodies import Upper


async def _post(world: MemoryWorld, body: bytes | list[bytes]) -> int:
    """POST ``body`` (a list: chunked); the body length the origin received."""
    async with world.open() as stream:
        reply = await Client(stream).request(b"POST", b"/upload", body=body)
    assert reply.status == 200
    length: int = json.loads(reply.body)["body_length"]
    return length


async def test_an_entry_keeps_the_first_bytes_of_the_request_body(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with memory_world(journal_body_bytes=4) as world:
        assert await _post(world, b"0123456789") == 10  # the origin still gets all of it
        assert await _post(world, b"ab") == 2  # shorter than the limit: all of it
        long, short = world.journal
        assert (long.request_body_prefix, short.request_body_prefix) == (b"0123", b"ab")
        assert long.as_json()["request_body_prefix"] == "0123"


async def test_a_chunked_body_is_kept_without_its_framing_across_chunks(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with memory_world(journal_body_bytes=5) as world:
        assert await _post(world, [b"ab", b"cd", b"efgh"]) == 8
        (entry,) = world.journal
        assert entry.request_body_prefix == b"abcde"


async def test_a_body_streamed_past_the_buffer_is_kept_from_its_start(
    autojump_clock: trio.testing.MockClock,
) -> None:
    settings = settings_from_bytes(b"[limits]\nrequest_buffer_bytes = 16\n", file="t.toml")
    body = bytes(range(256)) * 1024
    async with memory_world(settings=settings, journal_body_bytes=1000) as world:
        assert await _post(world, body) == len(body)
        (entry,) = world.journal
        assert entry.request_body_prefix == body[:1000]


async def test_the_setting_gives_the_default_and_0_keeps_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    settings = settings_from_bytes(b"[admin]\njournal_body_bytes = 3\n", file="t.toml")
    async with memory_world(settings=settings) as world:
        await _post(world, b"abcdef")
        assert [e.request_body_prefix for e in world.journal] == [b"abc"]
    async with memory_world() as world:  # the default: none
        await _post(world, b"abcdef")
        assert [e.request_body_prefix for e in world.journal] == [b""]


async def test_a_hook_transforming_the_body_leaves_the_prefix_as_received(
    autojump_clock: trio.testing.MockClock,
) -> None:
    settings = replace(embedded(("upper", {})), admin=Admin(journal_size=5, journal_body_bytes=4))
    async with hooked(settings, {"upper": Upper()}) as (proxy, _origin):
        async with proxy.client() as client:
            posted = await client.request(b"POST", b"/upload", body=b"abc" * 1000)
    assert posted.body == b"3001<end>"  # transformed on its way (upper case, a "!" added)
    assert proxy.server.journal is not None
    assert [e.request_body_prefix for e in proxy.server.journal] == [b"abca"]
