"""The container's memory limit, read from the cgroup files, and the settings fitted to it.

A container's memory limit (Kubernetes ``resources.limits.memory``, ``docker run --memory``)
is the cgroup v2 ``memory.max`` or the v1 ``memory.limit_in_bytes``; the limit that binds is
the smallest over the process's cgroup and its ancestors. Without a cgroup namespace a
container sees its host-side path (``/docker/ID``) under a mount of its own group, so the walk
goes up to the mount's root, where the container's own file is. `config._memfit` decides what
fits. This module never imports trio.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..config._memfit import binding_limit, fit_settings
from ..config._settings import Settings

__all__ = [
    "fitted",
    "fitted_for_config",
    "memory_limit",
    "memory_limit_texts",
    "sets_max_connections",
]

_CGROUP_ROOT = Path("/sys/fs/cgroup")
# Set by the --workers supervisor for its workers, which share the container's memory.
WORKER_COUNT_ENV = "TRIOPROXY_WORKER_COUNT"


def _up_the_tree(mount: Path, relative: str, name: str) -> list[str]:
    """The contents of ``name`` in the group ``relative`` under ``mount`` and in each of its
    ancestors up to the mount's root (files that are missing or unreadable are skipped)."""
    parts = [part for part in relative.strip().split("/") if part]
    texts = []
    for depth in range(len(parts), -1, -1):
        try:
            texts.append((mount.joinpath(*parts[:depth]) / name).read_text())
        except OSError:
            continue
    return texts


def memory_limit_texts(proc_cgroup: str, root: Path = _CGROUP_ROOT) -> list[str]:
    """Every memory limit file on the way from this process's groups (``proc_cgroup`` is the
    text of /proc/self/cgroup) to the root: v2's ``memory.max`` and v1's
    ``memory.limit_in_bytes`` (a hybrid host has both kinds of line)."""
    texts = []
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, relative = parts
        if controllers == "":  # "0::PATH", the v2 unified group
            texts += _up_the_tree(root, relative, "memory.max")
        elif "memory" in controllers.split(","):
            texts += _up_the_tree(root / "memory", relative, "memory.limit_in_bytes")
    return texts


def memory_limit() -> int | None:
    """The memory limit that binds this process, in bytes; None without one."""
    try:
        proc_cgroup = Path("/proc/self/cgroup").read_text()
    except OSError:  # not Linux
        return None
    return binding_limit(memory_limit_texts(proc_cgroup))


def sets_max_connections(raw: bytes | None) -> bool:
    """Whether a configuration file's bytes set ``limits.max_connections`` (they were checked
    already: anything unreadable here counts as not set)."""
    if not raw:
        return False
    import tomllib  # here: no file, no TOML parser (and its datetime) in the process

    try:
        limits = tomllib.loads(raw.decode("utf-8")).get("limits")
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError, ValueError):
        return False
    return isinstance(limits, dict) and "max_connections" in limits


def fitted(settings: Settings, raw: bytes | None) -> tuple[Settings, str, bool]:
    """``settings`` (loaded from ``raw``) fitted to this process's share of the memory limit,
    the line saying so ("" if nothing changed or needs saying) and whether it warns."""
    try:
        workers = max(1, int(os.environ.get(WORKER_COUNT_ENV, "1")))
    except ValueError:
        workers = 1
    return fit_settings(
        settings,
        limit_bytes=memory_limit(),
        workers=workers,
        explicit=sets_max_connections(raw),
    )


def fitted_for_config(settings: Settings, explicit: bool) -> tuple[Settings, str]:
    """For ``trioproxy config``: ``settings`` as a proxy started here with the same
    environment would run them, each process's ``limits.max_connections`` fitted to its share
    of the memory limit (``TRIOPROXY_WORKERS``, as the proxy reads it: ``config`` has no
    ``--workers``), and the line saying so ("" when nothing changed or needs saying)."""
    from ..config._options import OptionError, resolve
    from ._cpus import auto_workers

    try:
        workers = resolve({"workers": None}, os.environ)[0]["workers"]
    except OptionError:  # the proxy would refuse it and say so; here it changes nothing
        workers = 1
    if workers is None:  # auto
        workers = auto_workers()
    fitted_settings, line, _ = fit_settings(
        settings, limit_bytes=memory_limit(), workers=workers, explicit=explicit
    )
    return fitted_settings, line
