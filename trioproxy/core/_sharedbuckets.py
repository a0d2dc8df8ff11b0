"""Token buckets shared by the workers of one container: a fixed hash table in shared memory.

With ``--workers N`` the supervisor makes one memfd of `TABLE_BYTES` and every worker maps
it, so a client has one bucket whichever worker the kernel hands its connection to. The
arithmetic is `_ratelimit`'s (a bucket is the time it is full again, GCRA); only the storage
differs. The table is `GROUPS` groups of `GROUP_SLOTS` slots; a (rule, client) pair hashes to
one group, where it has a slot or takes the emptiest (a full bucket, then the least far
refilled, counted as an eviction). Each group is guarded by a POSIX record lock on one byte
of the file (``fcntl.lockf``), taken for the microseconds of one update; a worker is one
thread, so the per-process nature of those locks is what we want. Only a request that
matches a ``rate_limit`` rule ever gets here.

Times come from ``time.monotonic()`` (CLOCK_MONOTONIC is the same clock in every process of
the machine; trio's clock is per process), or from ``clock`` in tests. Separate replicas of
the container share nothing: each limits on its own. This module never imports trio.
"""

from __future__ import annotations

import fcntl
import math
import mmap
import os
import struct
import time
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the supervisor creates the table without loading the rules
    from ._ruleengine import Buckets
    from ._rulemodel import RateLimit

# As `_ratelimit`: float noise must not refuse a token due back now.
_EPSILON_S = 1e-9

__all__ = ["GROUPS", "GROUP_SLOTS", "TABLE_BYTES", "SharedBuckets", "SharedTable", "create"]

GROUP_SLOTS = 8
GROUPS = 1 << 14  # 131072 buckets in all, 2 MiB; pages are touched (and cost RSS) on use
_KEYS = struct.Struct(f"<{GROUP_SLOTS}Q")  # 0 = empty
_TATS = struct.Struct(f"<{GROUP_SLOTS}d")
_GROUP_BYTES = _KEYS.size + _TATS.size
TABLE_BYTES = GROUPS * _GROUP_BYTES
_SLOT = struct.Struct("<Q")
_TAT = struct.Struct("<d")


def create() -> int:
    """A new zeroed table (an inheritable memfd of `TABLE_BYTES`): the supervisor's part."""
    fd = os.memfd_create("trioproxy-rate-limits", 0)
    os.ftruncate(fd, TABLE_BYTES)
    return fd


class SharedTable:
    """One worker's mapping of the table."""

    def __init__(self, fd: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.fd = fd
        self.map = mmap.mmap(fd, TABLE_BYTES)
        self.clock = clock

    def buckets(self, index: int, limit: RateLimit) -> Buckets:
        """The `_ruleengine.BucketsFactory`: the buckets of the rate limit of rule ``index``."""
        return SharedBuckets(self, index, limit)


class SharedBuckets:
    """One rate limit's buckets in the shared table; a drop-in for `TokenBuckets`."""

    __slots__ = ("_interval_s", "_salt", "_table", "_tolerance_s", "evictions")

    def __init__(self, table: SharedTable, index: int, limit: RateLimit) -> None:
        if not (limit.rate_per_s > 0 and math.isfinite(limit.rate_per_s)) or limit.burst < 1:
            raise ValueError("rate_per_s must be positive and finite, burst at least 1")
        self._table = table
        self._interval_s = 1.0 / limit.rate_per_s
        self._tolerance_s = (limit.burst - 1) * self._interval_s
        # The same rule in every worker gets the same salt (a reload that keeps a limit as it
        # is keeps its buckets); a changed one starts afresh.
        self._salt = zlib.crc32(f"{index}:{limit.rate_per_s!r}:{limit.burst}".encode())
        self.evictions = 0

    def take(self, key: int | str, now_s: float) -> float:
        """As `TokenBuckets.take`, on the shared clock (``now_s`` is the caller's, unused)."""
        if isinstance(key, str):
            key = int.from_bytes(zlib.crc32(key.encode()).to_bytes(4, "little") * 2, "little")
        # hash() of a tuple of ints is the same in every process (only str hashes are salted).
        fingerprint = (hash((self._salt, key)) & 0xFFFF_FFFF_FFFF_FFFF) | 1
        group = fingerprint & (GROUPS - 1)
        table = self._table
        memory = table.map
        offset = group * _GROUP_BYTES
        fcntl.lockf(table.fd, fcntl.LOCK_EX, 1, group)
        try:
            now_s = table.clock()
            keys = _KEYS.unpack_from(memory, offset)
            tats = _TATS.unpack_from(memory, offset + _KEYS.size)
            try:
                slot = keys.index(fingerprint)
                tat: float = tats[slot]
            except ValueError:
                slot = -1
                tat = now_s
            tat = max(tat, now_s)  # full: refilling starts now
            wait_s = tat - self._tolerance_s - now_s
            if wait_s > _EPSILON_S:
                return wait_s
            if slot < 0:
                slot = self._victim(keys, tats, now_s)
                _SLOT.pack_into(memory, offset + 8 * slot, fingerprint)
            _TAT.pack_into(memory, offset + _KEYS.size + 8 * slot, tat + self._interval_s)
            return 0.0
        finally:
            fcntl.lockf(table.fd, fcntl.LOCK_UN, 1, group)

    def _victim(self, keys: tuple[int, ...], tats: tuple[float, ...], now_s: float) -> int:
        if 0 in keys:
            return keys.index(0)
        oldest = min(range(GROUP_SLOTS), key=tats.__getitem__)
        if tats[oldest] > now_s:  # still refilling: a client loses what it spent
            self.evictions += 1
        return oldest
