"""Check a hook file without running it: syntax, the named hook, its hook points, blocking calls.

Works on the syntax tree alone (no import, no trio), so ``trioproxy validate`` stays quick and
offline; importing the file is a separate step in a bounded child process (`_hookimport`).
Each problem is ``(line, message)``; the caller names the file.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from ..core._hookspec import HOOK_POINTS, OPT_OUT_COMMENT

__all__ = ["check_hook_source"]

Finding = tuple[int | None, str]

# Calls that block the event loop, by the module they come from (or the builtin's name).
_BLOCKING_MODULES = ("requests", "urllib.request", "socket", "subprocess", "asyncio", "http.client")
_BLOCKING_CALLS = {
    "time.sleep": "time.sleep blocks every connection; use 'await trio.sleep(...)'",
    "open": "open() reads the disk on the event loop; read at import, or use trio.Path",
    "os.system": "os.system blocks every connection",
    "os.popen": "os.popen blocks every connection",
}


def check_hook_source(source: bytes, name: str, *, filename: str = "<hook>") -> list[Finding]:
    """The problems of the hook ``name`` in ``source`` (empty: nothing found statically)."""
    try:
        tree = ast.parse(source, filename)
    except SyntaxError as exc:
        return [(exc.lineno, f"invalid Python: {exc.msg}")]
    except ValueError as exc:  # NUL bytes
        return [(None, f"invalid Python: {exc}")]
    findings = list(_named(tree, name))
    findings += _blocking_calls(tree, source.decode("utf-8", "replace").splitlines())
    return findings


def _named(tree: ast.Module, name: str) -> Iterator[Finding]:
    node = _binding(tree, name)
    if node is None:
        defined = sorted(
            n.name
            for n in tree.body
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        )
        known = f" (defined: {', '.join(defined)})" if defined else ""
        yield None, f"no hook named {name!r} in this file{known}"
    elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        yield from _point(node, "request", method=False)
    elif isinstance(node, ast.ClassDef):
        yield from _class(node)
    # Anything else (an assignment, an import) is checked when the file is imported.


def _binding(tree: ast.Module, name: str) -> ast.stmt | None:
    found: ast.stmt | None = None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if node.name == name:
                found = node
        elif _binds(node) and name in _assigned(node):
            found = node
    return found


def _binds(node: ast.stmt) -> bool:
    return isinstance(node, ast.Assign | ast.AnnAssign | ast.Import | ast.ImportFrom)


def _assigned(node: ast.stmt) -> set[str]:
    if isinstance(node, ast.Import | ast.ImportFrom):
        return {(a.asname or a.name).partition(".")[0] for a in node.names}
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]  # type: ignore[attr-defined]
    return {t.id for t in targets if isinstance(t, ast.Name)}


def _class(node: ast.ClassDef) -> Iterator[Finding]:
    methods = {
        item.name: item
        for item in node.body
        if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item.name in HOOK_POINTS
    }
    if not methods and not node.bases:
        points = ", ".join(HOOK_POINTS)
        yield node.lineno, f"class {node.name} defines no hook point (one of: {points})"
    for point, method in methods.items():
        yield from _point(method, point, method=True)


def _point(
    node: ast.FunctionDef | ast.AsyncFunctionDef, point: str, *, method: bool
) -> Iterator[Finding]:
    expected = HOOK_POINTS[point]
    if _whole_body(node):  # @whole_body(...) takes (exchange, body) and gives the point
        expected = ("exchange", "body")
    if not isinstance(node, ast.AsyncFunctionDef):
        yield node.lineno, f"{node.name} must be 'async def' (a hook runs on the event loop)"
    args = node.args
    positional = [a.arg for a in (*args.posonlyargs, *args.args)]
    if method and not any(
        isinstance(d, ast.Name) and d.id == "staticmethod" for d in node.decorator_list
    ):
        positional = positional[1:]  # self (or cls)
    required = len(positional) - len(args.defaults)
    fits = required <= len(expected) and (
        len(positional) >= len(expected) or args.vararg is not None
    )
    kw_required = [
        a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is None
    ]
    if not fits or kw_required:
        want = ", ".join(expected)
        found = ", ".join(positional + [f"*, {a}" for a in kw_required])
        yield node.lineno, f"{node.name} takes ({found}); the {point} hook point passes ({want})"


def _whole_body(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    for decorator in node.decorator_list:
        called = decorator.func if isinstance(decorator, ast.Call) else decorator
        name = called.attr if isinstance(called, ast.Attribute) else getattr(called, "id", "")
        if name == "whole_body":
            return True
    return False


def _blocking_calls(tree: ast.Module, lines: list[str]) -> Iterator[Finding]:
    aliases = _import_aliases(tree)
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.Call):
                message = _blocking(_dotted(node.func, aliases))
                line = node.lineno
                if message and OPT_OUT_COMMENT not in lines[line - 1]:
                    yield line, f"{message} (or mark the line '{OPT_OUT_COMMENT}')"


def _blocking(name: str | None) -> str | None:
    if name is None:
        return None
    if name in _BLOCKING_CALLS:
        return _BLOCKING_CALLS[name]
    for module in _BLOCKING_MODULES:
        if name == module or name.startswith(module + "."):
            return (
                f"{name} blocks every connection; await an async library, or run it in a"
                " thread with 'await trioproxy.hooks.run_blocking(...)'"
            )
    return None


def _import_aliases(tree: ast.Module) -> dict[str, str]:
    """Local names to the dotted names they stand for (``from time import sleep``)."""
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    aliases[alias.asname] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return aliases


def _dotted(node: ast.expr, aliases: dict[str, str]) -> str | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(aliases.get(node.id, node.id))
    return ".".join(reversed(parts))
