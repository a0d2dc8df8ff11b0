"""The optional compiled build (setup.py with TRIOPROXY_MYPYC=1): what it compiles, that the
default build compiles nothing, and which build the tests are running on.

scripts/test-compiled runs the engine tests and the simulation on the compiled copy with
TRIOPROXY_EXPECT_COMPILED=1; everywhere else the interpreted sources must be what runs.
"""

from __future__ import annotations

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
    modules = _setup()["compiled_modules"](ROOT)
    assert set(REQUEST_PATH) <= set(modules)
    assert "trioproxy/engine/_h11.py" not in modules
    assert "trioproxy/core/_errors.py" not in modules


def test_without_the_flag_the_build_compiles_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRIOPROXY_MYPYC", raising=False)
    assert _setup()["_ext_modules"]() == []


@pytest.mark.parametrize("path", _setup()["compiled_modules"](ROOT))
def test_each_module_runs_compiled_exactly_when_the_compiled_build_is_expected(path: str) -> None:
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    compiled = isinstance(module.__loader__, importlib.machinery.ExtensionFileLoader)
    assert compiled == (os.environ.get("TRIOPROXY_EXPECT_COMPILED") == "1"), module.__file__
