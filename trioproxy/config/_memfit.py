"""How many client connections fit a memory limit: ``limits.max_connections`` follows the
container's memory limit unless the configuration sets it.

Every connection may make a process hold its head, its buffered request body and its buffered
response (`Limits`): at the defaults about 300 KiB, so 10,000 connections could need 3 GiB, and
a container limited to 256 MiB would be OOM-killed by an attack long before any limit of ours
applied. So each process takes its share of three quarters of the limit, less what the
processes need idle, and admits no more connections than fit in it at their worst; the rest
wait in the kernel's backlog, as they do at any ``max_connections``. Pure functions over
numbers and `Settings`; `app._memlimit` reads the limit from the cgroup files.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from ._settings import Limits, Settings

__all__ = [
    "binding_limit",
    "connection_bytes",
    "fit_settings",
    "fitting_connections",
    "parse_memory_limit",
]

KiB, MiB = 1 << 10, 1 << 20
# Measured on the image (tests/image/test_memory_attack.py's attacker, 1,000 connections of
# a kind, cgroup v1, h11): a partial 58 KiB head costs 68 KiB; a 58 KiB head with 62.5 KiB of
# a buffered body, 226 KiB (the body is read in pieces, then joined: twice its size); a
# buffered 64 KiB response its client never reads, 19 KiB, its bytes then being in the
# socket's send buffer, which cgroup v2 charges to the container and v1 does not: so the
# response buffer is counted whole, and the head and body with a margin over what was seen.
HEAD_FACTOR = 1.25
BODY_FACTOR = 2
CONNECTION_OVERHEAD_BYTES = 32 * KiB  # tasks, h11 state, socket structures
# Idle sizes, rounded up from bench/measured.json (idle_rss_mib: 24.1 single, 23.7 a worker,
# 15.5 the --workers supervisor).
PROCESS_BYTES = 24 * MiB
SUPERVISOR_BYTES = 16 * MiB
# The rest of the limit is margin: allocator fragmentation after churn, garbage not yet
# collected, the access-log queue, a reload's configuration checker.
USABLE_SHARE = 0.75
# cgroup v1 says "no limit" with a huge number (PAGE_COUNTER_MAX pages in bytes).
UNLIMITED_FROM = 1 << 60


def parse_memory_limit(text: str) -> int | None:
    """Bytes allowed by one ``memory.max`` (v2) or ``memory.limit_in_bytes`` (v1) file's
    content; None for no limit or anything unreadable."""
    value = text.strip()
    if not value.isdigit():  # "max", empty, garbage
        return None
    limit = int(value)
    return limit if 0 < limit < UNLIMITED_FROM else None


def binding_limit(texts: Iterable[str]) -> int | None:
    """The smallest limit among a cgroup's files and its ancestors' (the one that binds)."""
    limits = [limit for text in texts if (limit := parse_memory_limit(text)) is not None]
    return min(limits, default=None)


def connection_bytes(limits: Limits) -> int:
    """What one client connection can make a process hold at worst under ``limits``."""
    return int(
        HEAD_FACTOR * limits.max_header_bytes
        + BODY_FACTOR * limits.request_buffer_bytes
        + limits.response_buffer_bytes
        + CONNECTION_OVERHEAD_BYTES
    )


def fitting_connections(limit_bytes: int, limits: Limits, workers: int) -> int:
    """The connections one of ``workers`` processes may hold so that all of them together,
    each at its worst, stay within ``limit_bytes``; at least 1."""
    idle = workers * PROCESS_BYTES + (SUPERVISOR_BYTES if workers > 1 else 0)
    budget = USABLE_SHARE * limit_bytes - idle
    return max(1, int(budget / workers / connection_bytes(limits)))


def fit_settings(
    settings: Settings, *, limit_bytes: int | None, workers: int, explicit: bool
) -> tuple[Settings, str, bool]:
    """``settings`` with ``limits.max_connections`` lowered to what fits ``limit_bytes`` when
    the configuration did not set it (``explicit``), a line saying what was decided ("" if
    nothing is worth saying), and whether that line is a warning: an explicit value is kept,
    and warned about if it does not fit."""
    if limit_bytes is None:
        return settings, "", False
    limits = settings.limits
    fits = fitting_connections(limit_bytes, limits, workers)
    if fits >= limits.max_connections:
        return settings, "", False
    worst = connection_bytes(limits)
    where = f"the memory limit of {limit_bytes / MiB:.0f} MiB"
    per = f"{worst / KiB:.0f} KiB a connection at worst"
    each = " per worker" if workers > 1 else ""
    if explicit:
        line = (
            f"limits.max_connections = {limits.max_connections} does not fit {where} "
            f"({per}; {fits}{each} would): an attack can get the process OOM-killed"
        )
        return settings, line, True
    line = (
        f"limits.max_connections {fits}{each}, fitted to {where} ({per}); "
        "set it in the configuration to choose another"
    )
    return replace(settings, limits=replace(limits, max_connections=fits)), line, False
