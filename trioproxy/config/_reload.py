"""What a reload (SIGHUP) changes: the keys that differ, and which of them need a restart.

Pure functions over two `Settings`; the CLI and the supervisor do the reading and the swapping.
Restart-only keys keep their old value until the next start: the admin address (a bound
socket), the pool's size and the connection limit (sized once), and the diagnostics format
(the stderr handler, and a supervisor's workers, are set up with it once). They are listed
once, in `RESTART_ONLY`: `applicable` keeps exactly those, and `summary` names exactly those.
The listen address and the worker count are command-line settings, never in the file, so a
reload cannot touch them.
"""

from __future__ import annotations

from dataclasses import fields, replace

from ._settings import Settings

__all__ = ["RESTART_ONLY", "applicable", "changed_keys", "missing", "rejected", "summary"]

RESTART_ONLY = frozenset(
    {
        "admin.listen",
        "admin.journal_size",
        "admin.journal_body_bytes",
        "admin.faults",
        "upstream.pool_size",
        "limits.max_connections",
        "diagnostics.format",
    }
)


def changed_keys(old: Settings, new: Settings) -> list[str]:
    """Dotted keys whose value differs, in file order; ``rules`` stands for all [[rules]]."""
    changed = []
    for section in fields(Settings):
        before, after = getattr(old, section.name), getattr(new, section.name)
        if before == after:
            continue
        if section.name == "rules":
            changed.append("rules")
            continue
        for key in fields(before):
            if getattr(before, key.name) != getattr(after, key.name):
                changed.append(f"{section.name}.{key.name}")
    return changed


def applicable(old: Settings, new: Settings) -> Settings:
    """``new`` with the restart-only keys kept as they are in ``old``."""
    kept: dict[str, dict[str, object]] = {}
    for key in RESTART_ONLY:
        section, name = key.split(".")
        kept.setdefault(section, {})[name] = getattr(getattr(old, section), name)
    return replace(
        new, **{section: replace(getattr(new, section), **keys) for section, keys in kept.items()}
    )


def summary(file: str, changed: list[str]) -> tuple[bool, str]:
    """The reload's one stderr line, and whether it is a warning (restart-only keys changed)."""
    kept = [key for key in changed if key in RESTART_ONLY]
    applied = [key for key in changed if key not in RESTART_ONLY]
    line = f"reload {file}: ok, " + (f"changed {', '.join(applied)}" if applied else "no change")
    if kept:
        line += f"; {', '.join(kept)} changed but need a restart: kept as they were"
    return bool(kept), line


def rejected(file: str, problems: int) -> str:
    """The reload's line when the file is invalid (its problems precede it)."""
    return f"reload {file}: rejected ({problems} problem(s) above), still serving the old one"


def missing(file: str, running: Settings) -> str | None:
    """The reload's line when ``file`` is gone: a deleted file would otherwise mean the
    defaults, dropping every rule (allow lists included) on a config-sync tool's hiccup.
    None when the running configuration is the defaults anyway (nothing to lose)."""
    if not changed_keys(running, Settings()):
        return None
    return f"reload {file}: rejected (the file is missing), still serving the old one"
