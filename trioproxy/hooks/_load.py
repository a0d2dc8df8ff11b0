"""Turn hook files' bytes into hook objects: compiled under a private module name, never
imported from ``sys.path``, and each named hook resolved to its hook points.

The bytes are the ones read with trioproxy.toml (`config._hookfiles`), so every worker runs
exactly what was checked. Each load makes fresh modules: a reload never shares module state
with the configuration it replaces.
"""

from __future__ import annotations

import inspect
import itertools
import re
import sys
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..core._hookspec import HOOK_POINTS
from ..core._rulemodel import HookAction

__all__ = ["HookLoadError", "LoadedHook", "load_hooks", "resolve"]

_generation = itertools.count(1)


class HookLoadError(Exception):
    """A hook file could not be run, or a name in it is not a hook (the message says which)."""


@dataclass(frozen=True, slots=True)
class LoadedHook:
    """A hook's points (None where it defines none), ready to be awaited."""

    label: str
    request: Callable[..., Any] | None = None
    response: Callable[..., Any] | None = None
    access: Callable[..., Any] | None = None
    lifespan: Callable[..., Any] | None = None
    request_body: Callable[..., Any] | None = None
    response_body: Callable[..., Any] | None = None


def load_hooks(
    actions: Iterable[HookAction], embedded: Mapping[str, object] | None = None
) -> dict[HookAction, LoadedHook]:
    """Each action's hook: from its file's bytes, or from ``embedded`` (by name) when it has
    no file. Raises HookLoadError naming the file, line and problem."""
    modules: dict[tuple[str, bytes], dict[str, Any]] = {}
    loaded: dict[HookAction, LoadedHook] = {}
    for action in actions:
        if action in loaded:
            continue
        if not action.file:
            if embedded is None or action.name not in embedded:
                raise HookLoadError(f"{action.name}: no such hook was given to the proxy")
            loaded[action] = resolve(embedded[action.name], action.label)
            continue
        key = (action.file, action.source)
        if key not in modules:
            modules[key] = _run_module(action.file, action.source)
        namespace = modules[key]
        if action.name not in namespace:
            raise HookLoadError(f"{action.file}: no hook named {action.name!r}")
        loaded[action] = resolve(namespace[action.name], action.label)
    return loaded


def _run_module(file: str, source: bytes) -> dict[str, Any]:
    stem = re.sub(r"\W", "_", file.removesuffix(".py"))
    name = f"trioproxy._hookfiles.g{next(_generation)}.{stem}"
    module = types.ModuleType(name)
    module.__file__ = file
    try:
        code = compile(source, file, "exec", dont_inherit=True)
        # Registered while it runs (dataclasses and typing look a class's module up there),
        # and removed afterwards: nothing can import it from sys.path or sys.modules.
        sys.modules[name] = module
        try:
            exec(code, module.__dict__)
        finally:
            sys.modules.pop(name, None)
    except SyntaxError as exc:
        raise HookLoadError(f"{file}:{exc.lineno}: invalid Python: {exc.msg}") from None
    except Exception as exc:
        raise HookLoadError(f"{file}:{_line(exc, file)}: importing failed: {exc!r}") from None
    return module.__dict__


def _line(exc: BaseException, file: str) -> str:
    lines = [frame.lineno for frame in _frames(exc) if frame.filename == file]
    return str(lines[-1]) if lines else "?"


def _frames(exc: BaseException) -> list[Any]:
    import traceback

    return list(traceback.extract_tb(exc.__traceback__))


def resolve(obj: object, label: str) -> LoadedHook:
    """The hook points of ``obj``: an async function (the request point), a class
    (instantiated without arguments) or any object with async methods named for points."""
    if inspect.iscoroutinefunction(obj):
        return LoadedHook(label, request=obj)
    if inspect.isclass(obj):
        try:
            obj = obj()
        except Exception as exc:
            raise HookLoadError(f"{label}: creating the hook failed: {exc!r}") from None
    points: dict[str, Callable[..., Any]] = {}
    for point in HOOK_POINTS:
        method = getattr(obj, point, None)
        if method is None:
            continue
        if not inspect.iscoroutinefunction(method):
            raise HookLoadError(f"{label}: {point} must be an 'async def'")
        points[point] = method
    if not points:
        raise HookLoadError(
            f"{label}: not a hook (an async function, or an object with one of:"
            f" {', '.join(HOOK_POINTS)})"
        )
    return LoadedHook(label, **points)
