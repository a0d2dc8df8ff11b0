"""A rule's fault across a reload: unchanged at the same place, it keeps its state (its
``first``/``every`` counts and its seeded generator), as a rate limit keeps its buckets; a
changed or moved fault starts afresh. Reloaded as SIGHUP does (`ProxyServer.reload`), on the
memory network under the autojump clock."""

from __future__ import annotations

import trio
import trio.testing

from trioproxy.config._config import settings_from_bytes
from trioproxy.core._accesslog import AccessRecord
from trioproxy.testing import MemoryWorld, memory_world

from ..support import Client

FLAKY = b"""
[[rules]]
name = "flaky"
match.path_prefix = "/flaky/"
fault = { kind = "answer", status = 503, first = 2 }
"""
OTHER = b"""
[[rules]]
match.path_prefix = "/other/"
response_headers.set = { "x-other" = "1" }
"""
# The same fault at the same place, with an unrelated rule added after it.
FLAKY_AND_MORE = FLAKY + OTHER
# The fault changed (first = 3): a new fault, counting afresh.
FLAKIER = FLAKY.replace(b"first = 2", b"first = 3")
# The same fault moved behind another rule: not the same place.
MOVED = OTHER + FLAKY


def _reload(world: MemoryWorld, toml: bytes) -> None:
    world.proxy.server.reload(settings_from_bytes(toml, file="trioproxy.toml"), _discard)


def _discard(record: AccessRecord) -> None:
    """The access lines of the reloaded proxy: the journal is what the tests read."""


async def _statuses(world: MemoryWorld, count: int) -> list[int]:
    statuses = []
    for _ in range(count):
        async with world.open() as stream:
            statuses.append((await Client(stream).request(b"GET", b"/flaky/1")).status)
    return statuses


async def test_an_unchanged_fault_keeps_its_count_across_a_reload(
    autojump_clock: trio.testing.MockClock,
) -> None:
    settings = settings_from_bytes(FLAKY, file="trioproxy.toml")
    async with memory_world(settings=settings) as world:
        assert await _statuses(world, 1) == [503]
        _reload(world, FLAKY_AND_MORE)
        # first = 2 means the first two requests of the run, not two more after the reload.
        assert await _statuses(world, 2) == [503, 200]


async def test_a_changed_fault_counts_afresh_after_a_reload(
    autojump_clock: trio.testing.MockClock,
) -> None:
    settings = settings_from_bytes(FLAKY, file="trioproxy.toml")
    async with memory_world(settings=settings) as world:
        assert await _statuses(world, 2) == [503, 503]
        _reload(world, FLAKIER)
        assert await _statuses(world, 4) == [503, 503, 503, 200]


async def test_a_moved_fault_counts_afresh_after_a_reload(
    autojump_clock: trio.testing.MockClock,
) -> None:
    settings = settings_from_bytes(FLAKY, file="trioproxy.toml")
    async with memory_world(settings=settings) as world:
        assert await _statuses(world, 2) == [503, 503]
        _reload(world, MOVED)
        assert await _statuses(world, 3) == [503, 503, 200]


async def test_a_seeded_probability_continues_its_sequence_across_a_reload(
    autojump_clock: trio.testing.MockClock,
) -> None:
    toml = FLAKY.replace(b"first = 2", b"probability = 0.5, seed = 7")
    settings = settings_from_bytes(toml, file="trioproxy.toml")
    async with memory_world(settings=settings) as world:
        unbroken = await _statuses(world, 8)
    async with memory_world(settings=settings) as world:
        before = await _statuses(world, 4)
        _reload(world, toml + OTHER)
        after = await _statuses(world, 4)
    assert before + after == unbroken
