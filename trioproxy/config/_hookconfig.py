"""Parse a rule's ``hook = { file, name, timeout_s, on_error }`` into a `HookAction`.

The file's bytes come from the bundle read with the TOML (`_hookfiles`); problems with the
file itself (syntax, a missing name, a sync function, a blocking call) name the hook file and
its line, the way Python would, not the TOML.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from ..core._rulemodel import HookAction
from ._describe import describe
from ._hookcheck import check_hook_source
from ._hookfiles import hook_file_problem
from ._problems import Problem
from ._rulevalues import Parser, _fields, _Invalid, _Sink, _string

__all__ = ["hook_parser"]

_MAX_TIMEOUT_S = 60.0


def hook_parser(
    files: Mapping[str, bytes | str], toml_file: str, report: Callable[[Problem], None]
) -> Parser:
    """The parser of ``hook`` keys; problems inside a hook file go to ``report``."""
    directory = os.path.dirname(toml_file)

    def parse(raw: Any, key_path: str, sink: _Sink) -> HookAction | None:
        parsers: dict[str, Parser] = {
            "file": lambda value, _path, _sink: _file(value),
            "name": lambda value, _path, _sink: _identifier(value),
            "timeout_s": lambda value, _path, _sink: _timeout(value),
            "on_error": lambda value, _path, _sink: _on_error(value),
        }
        values = _fields(raw, key_path, parsers, sink)
        for key in ("file", "name"):
            if key not in raw:
                sink.report(
                    f"{key_path}.{key}", f"missing: a hook needs file and name ({_EXAMPLE})"
                )
        if "file" not in values or "name" not in values:
            return None
        file, name = values["file"], values["name"]
        source = files.get(file, "no such file in the configuration directory")
        if isinstance(source, str):
            sink.report(f"{key_path}.file", f"{file}: {source}")
            return None
        path = os.path.join(directory, file)
        findings = check_hook_source(source, name, filename=path)
        for line, message in findings:
            sink.ok = False
            report(Problem(path, line, "", message))
        if findings:
            return None
        return HookAction(
            file, name, values.get("timeout_s", 1.0), values.get("on_error", 0), source
        )

    return parse


_EXAMPLE = 'hook = { file = "hooks/auth.py", name = "check" }'


def _file(raw: Any) -> str:
    text = _string(raw, 'a path such as "hooks/auth.py"')
    problem = hook_file_problem(text)
    if problem is not None:
        raise _Invalid(problem)
    return text


def _identifier(raw: Any) -> str:
    text = _string(raw, "the name of an async function or class in the file")
    if not text.isidentifier():
        raise _Invalid(f"expected a Python name (an async function or class), found {text!r}")
    return text


def _timeout(raw: Any) -> float:
    if (
        isinstance(raw, bool)
        or not isinstance(raw, int | float)
        or not 0.001 <= raw <= _MAX_TIMEOUT_S
    ):
        raise _Invalid(f"expected seconds from 0.001 to {_MAX_TIMEOUT_S:g}, found {describe(raw)}")
    return float(raw)


def _on_error(raw: Any) -> int:
    if raw == "pass" or (raw in (502, 503) and not isinstance(raw, bool)):
        return 0 if raw == "pass" else int(raw)
    raise _Invalid(f'expected "pass", 502 or 503, found {describe(raw)}')
