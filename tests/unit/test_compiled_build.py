"""The optional compiled build (setup.py with TRIOPROXY_MYPYC=1): what it compiles, that the
default build compiles nothing, and which build the tests are running on.

scripts/test-compiled runs the engine tests and the simulation on the compiled copy with
TRIOPROXY_EXPECT_COMPILED=1; everywhere else the interpreted sources must be what runs.
"""

from __future__ import annotations

import ast
import importlib
import importlib.machinery
import os
import runpy
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
REQUEST_PATH = (
    "trioproxy/engine/_connection.py",
    "trioproxy/engine/_fairness.py",
    "trioproxy/engine/_peer.py",
    "trioproxy/engine/_slices.py",
    "trioproxy/engine/_transport.py",
    "trioproxy/core/_accesslog.py",
    "trioproxy/core/_headers.py",
    "trioproxy/core/_strict.py",
)


def _setup() -> dict[str, Any]:
    return runpy.run_path(str(ROOT / "setup.py"), run_name="setup")  # setup() is not called


def test_the_compiled_build_covers_the_request_path_and_leaves_out_what_mypyc_breaks() -> None:
    modules = _setup()["COMPILED"]
    assert set(REQUEST_PATH) <= set(modules)
    assert all((ROOT / module).is_file() for module in modules)
    for interpreted in ("engine/_h11.py", "core/_errors.py", "core/_bodylimit.py"):
        assert f"trioproxy/{interpreted}" not in modules


def test_without_the_flag_the_build_compiles_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRIOPROXY_MYPYC", raising=False)
    assert _setup()["_ext_modules"]() == []


@pytest.mark.parametrize("path", _setup()["COMPILED"])
def test_each_module_runs_compiled_exactly_when_the_compiled_build_is_expected(path: str) -> None:
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    compiled = isinstance(module.__loader__, importlib.machinery.ExtensionFileLoader)
    assert compiled == (os.environ.get("TRIOPROXY_EXPECT_COMPILED") == "1"), module.__file__


def test_no_interpreted_class_subclasses_a_compiled_one() -> None:
    """Compiled, that raises TypeError at import ("interpreted classes cannot inherit from
    compiled"): a module with such a subclass must be compiled too."""
    compiled = set(_setup()["COMPILED"])
    defined_in = {
        node.name: path
        for path in compiled
        for node in ast.parse((ROOT / path).read_text()).body
        if isinstance(node, ast.ClassDef)
    }
    offenders = [
        f"{path.relative_to(ROOT)}: {node.name}({ast.unparse(base)})"
        for folder in ("trioproxy", "tests", "fuzz", "examples")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path.relative_to(ROOT).as_posix() not in compiled
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ClassDef)
        for base in node.bases
        if ast.unparse(base).rpartition(".")[2] in defined_in
    ]
    assert offenders == []
