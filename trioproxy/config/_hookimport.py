"""Import the hook files of a configuration in a bounded child process (`hooks._child`).

The last step of checking a configuration with hooks (``trioproxy validate``, a reload's
check): the syntax-tree checks have passed, and this runs each file's import-time code with
``python -I`` (no user site, no environment, no working directory on the path), CPU and
memory limits, no network and a timeout, reporting ``file:line: problem`` lines.
"""

from __future__ import annotations

import marshal
import os
import re
import subprocess
import sys

from ..core._rulemodel import HookAction, RuleSet
from ._problems import ConfigError, Problem
from ._settings import Settings

__all__ = ["IMPORT_TIMEOUT_S", "check_hook_imports", "import_problems"]

IMPORT_TIMEOUT_S = 20.0

_LINE = re.compile(r"(?P<file>[^:\n]+?)(?::(?P<line>\d+|\?))?: (?P<message>.*)")


def check_hook_imports(
    settings: Settings, toml_file: str, *, examples_of: bytes | None = None
) -> Settings:
    """``settings`` when its hook files import cleanly (or it has none); else ConfigError.
    With ``examples_of`` (the configuration's bytes) the hook files' examples run too."""
    if settings.rules.has_hooks:
        problems = import_problems(settings.rules, toml_file, examples_of=examples_of)
        if problems:
            raise ConfigError(problems)
    return settings


def import_problems(
    rules: RuleSet, toml_file: str, *, examples_of: bytes | None = None
) -> list[Problem]:
    """Problems importing the hook files ``rules`` name ([] when they all load), and running
    their examples through the configuration ``examples_of`` (its bytes) when given."""
    seen: dict[tuple[str, str], HookAction] = {}
    for rule in rules.rules:
        for action in rule.actions:
            if isinstance(action, HookAction) and action.file:
                seen.setdefault((action.file, action.name), action)
    if not seen:
        return []
    hooks = tuple((a.file, a.name, a.source) for a in seen.values())
    examples = None if examples_of is None else (toml_file, examples_of)
    payload = marshal.dumps((hooks, examples))
    directory = os.path.dirname(toml_file)
    command = [sys.executable, "-I", "-m", "trioproxy.hooks._child"]
    try:
        done = subprocess.run(
            command,
            input=payload,
            capture_output=True,
            timeout=IMPORT_TIMEOUT_S,
            cwd=directory or None,
            check=False,
        )
    except subprocess.TimeoutExpired:
        message = f"importing the hook files took longer than {IMPORT_TIMEOUT_S:g}s"
        return [Problem(toml_file, None, "", message)]
    if done.returncode == 0:
        return []
    lines = done.stdout.decode("utf-8", "replace").splitlines()
    if not lines:  # killed (CPU or memory limit) or crashed before it could say
        tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:]
        why = tail[0] if tail else f"exit status {done.returncode}"
        return [Problem(toml_file, None, "", f"importing the hook files failed: {why}")]
    return [_problem(line, directory) for line in lines]


def _problem(line: str, directory: str) -> Problem:
    found = _LINE.fullmatch(line)
    if found is None:
        return Problem(directory, None, "", line)
    number = found["line"]
    path = os.path.join(directory, found["file"])
    return Problem(path, int(number) if number and number != "?" else None, "", found["message"])
