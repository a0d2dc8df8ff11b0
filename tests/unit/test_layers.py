"""The layers of trioproxy/, checked on the source: what each package may import, and no cycles.

Every import counts: module level, inside functions and under ``TYPE_CHECKING`` alike.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "trioproxy"
IO_LIBRARIES = {"trio", "h11", "h11_mypyc"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module `path` imports: absolute names, relative ones resolved."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: up from this module's package, level - 1 steps
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *filter(None, [node.module])])
            found.add(module)
            # `from . import x` and `from .pkg import _mod` name modules too
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


GRAPH = {_module_name(p): _imports(p) for p in sorted(PACKAGE.rglob("*.py"))}
OURS = {name: {m for m in deps if m in GRAPH and m != name} for name, deps in GRAPH.items()}


def _layer(module: str) -> str:
    return module.split(".")[1] if module.count(".") >= 1 else ""


def _reaches(module: str) -> set[str]:
    """The modules `module` imports, directly or through other trioproxy modules."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        for dep in OURS[todo.pop()] - seen:
            seen.add(dep)
            todo.append(dep)
    return seen


def test_core_and_config_import_neither_trio_nor_h11() -> None:
    wrong = []
    for module in GRAPH:
        if _layer(module) in ("core", "config"):
            for dep in {module} | _reaches(module):
                bad = {d for d in GRAPH[dep] if d.split(".")[0] in IO_LIBRARIES}
                wrong += [f"{module} -> {dep} imports {sorted(bad)}"] if bad else []
    assert not wrong, "\n".join(wrong)


def test_core_imports_no_other_layer_and_config_only_core() -> None:
    allowed = {"core": {"core"}, "config": {"core", "config"}}
    wrong = [
        f"{module} imports {dep}"
        for module, deps in OURS.items()
        for dep in deps
        if _layer(module) in allowed and _layer(dep) not in allowed[_layer(module)]
    ]
    assert not wrong, "\n".join(wrong)


def test_the_engine_never_imports_the_app() -> None:
    wrong = [
        f"{module} imports {dep}"
        for module, deps in OURS.items()
        if _layer(module) in ("core", "config", "engine")
        for dep in deps
        if _layer(dep) == "app"
    ]
    assert not wrong, "\n".join(wrong)


def test_only_the_test_helpers_and_the_pytest_plugin_import_testing() -> None:
    wrong = [
        f"{module} imports {dep}"
        for module, deps in OURS.items()
        if _layer(module) != "testing" and module != "trioproxy.pytest_plugin"
        for dep in deps
        if _layer(dep) == "testing"
    ]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles() -> None:
    cycles = sorted(
        f"{module} <-> {dep}"
        for module in OURS
        for dep in _reaches(module)
        if module < dep and module in _reaches(dep)
    )
    assert not cycles, "\n".join(cycles)


def test_the_graph_sees_the_layers() -> None:
    # Guards the walk itself: a rename that empties the graph would pass every rule above.
    assert {"trioproxy.core._strict", "trioproxy.engine._peer", "trioproxy.app._cli"} <= set(OURS)
    assert "trioproxy.core._ruleengine" in OURS["trioproxy.engine._server"]
