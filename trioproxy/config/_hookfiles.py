"""Hook files travel with trioproxy.toml: read once, beside it, as one bundle of bytes.

A configuration that names hook files (``hook = { file = "hooks/auth.py", ... }``) is read as
the TOML's bytes plus each hook file's bytes, packed into one ``bytes`` value (`bundle`), so
that everything that already carries "the configuration's bytes" (the supervisor's memfd to
its workers, a reload's check in a child process, the running copy a reload is compared
with) carries the hook files too, unchanged. Workers never open a hook file themselves: they
run exactly what was checked.

Only relative ``.py`` paths inside the configuration directory are read: no absolute path,
no ``..``, and no symbolic link leading out of it (the resolved path must stay inside).
"""

from __future__ import annotations

import marshal
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ._problems import ConfigError

__all__ = ["BUNDLE_MAGIC", "bundle", "hook_file_problem", "unbundle"]

# TOML text never holds a NUL (the reader rejects one), so this prefix cannot be a TOML file.
BUNDLE_MAGIC = b"\0trioproxy-bundle-1\0"

# A path's bytes or, when it could not be used, why not (a problem for the rule naming it).
HookFiles = Mapping[str, bytes | str]


Reader = Callable[[Path], bytes]  # `_configfile._read_bytes`: regular files, size-limited


def bundle(directory: Path, raw: bytes, read: Reader) -> bytes:
    """``raw`` alone when it names no hook file; else the bundle of it and those files."""
    files = dict(_read_each(directory, raw, read)) if b"hook" in raw else {}
    if not files:
        return raw
    return BUNDLE_MAGIC + marshal.dumps((raw, tuple(sorted(files.items()))))


def unbundle(raw: bytes) -> tuple[bytes, dict[str, bytes | str]]:
    """The TOML's bytes and the hook files' (path to bytes or a problem) from `bundle`."""
    if not raw.startswith(BUNDLE_MAGIC):
        return raw, {}
    toml, files = marshal.loads(raw[len(BUNDLE_MAGIC) :])
    return toml, dict(files)


def _read_each(directory: Path, raw: bytes, read: Reader) -> Iterator[tuple[str, bytes | str]]:
    import tomllib  # here: only a file that names hooks is read twice

    try:
        data = tomllib.loads(raw.decode("utf-8").removeprefix("\ufeff"))
    except (ValueError, RecursionError):
        return  # the TOML's own problems are reported when it is parsed for settings
    for name in _hook_file_names(data):
        if hook_file_problem(name) is None:
            yield name, _read(directory, name, read)


def _hook_file_names(data: Mapping[str, Any]) -> set[str]:
    rules = data.get("rules")
    names: set[str] = set()
    if isinstance(rules, list):
        for rule in rules:
            hook = rule.get("hook") if isinstance(rule, dict) else None
            if isinstance(hook, dict) and isinstance(hook.get("file"), str):
                names.add(hook["file"])
    return names


def hook_file_problem(name: str) -> str | None:
    """Why a ``hook.file`` value can never name a hook file, or None (checked without I/O)."""
    if not name.endswith(".py"):
        return f"expected a path to a .py file inside the configuration directory, found {name!r}"
    if name.startswith(("/", "\\")) or os.path.isabs(name) or "\\" in name:
        return f"must be relative to the configuration directory, found {name!r}"
    if any(part in ("..", "") for part in name.split("/")[:-1]) or name.startswith("./"):
        return f"must stay inside the configuration directory (no '..' or empty parts): {name!r}"
    if any(ord(char) < 0x20 or char == "\x7f" for char in name):
        return f"has a control character: {name!r}"
    return None


def _read(directory: Path, name: str, read: Reader) -> bytes | str:
    root = os.path.realpath(directory)
    resolved = os.path.realpath(os.path.join(root, name))
    if os.path.commonpath([root, resolved]) != root:
        return "is a symbolic link leading out of the configuration directory"
    try:
        return read(Path(resolved))
    except FileNotFoundError:
        return "no such file in the configuration directory"
    except ConfigError as exc:  # a directory, a FIFO, too large: the reason without the path
        return exc.problems[0].message
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"
