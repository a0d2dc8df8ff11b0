"""What a user installs: the wheel's and sdist's contents and metadata, the version's one source,
the public API, and a pytest plugin that costs nothing until a test asks for it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

import trioproxy

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 120  # a cap: an offline build takes a few seconds


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and wheel, built offline from a copy of the tree (the build writes beside
    its sources)."""
    tree = tmp_path_factory.mktemp("tree")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, tree / name)
    shutil.copytree(
        ROOT / "trioproxy", tree / "trioproxy", ignore=shutil.ignore_patterns("__pycache__")
    )
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--no-isolation",
            "--sdist",
            "--wheel",
            "--outdir",
            str(out),
        ],
        cwd=tree,
        check=True,
        capture_output=True,
        timeout=TIMEOUT_S,
    )
    return out


def _wheel(dist: Path) -> zipfile.ZipFile:
    (path,) = dist.glob("trioproxy-*.whl")
    return zipfile.ZipFile(path)


def test_the_wheel_carries_py_typed_and_the_license_and_no_tests(dist: Path) -> None:
    names = _wheel(dist).namelist()
    assert "trioproxy/py.typed" in names
    assert f"trioproxy-{trioproxy.__version__}.dist-info/licenses/LICENSE" in names
    assert not [name for name in names if name.startswith(("tests/", "fuzz/", "bench/"))]


def test_the_sdist_carries_the_license(dist: Path) -> None:
    (path,) = dist.glob("trioproxy-*.tar.gz")
    with tarfile.open(path) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {"LICENSE", "trioproxy/py.typed", "pyproject.toml", "README.md"} <= names


def test_the_wheel_metadata(dist: Path) -> None:
    wheel = _wheel(dist)
    (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    metadata = Parser().parsestr(wheel.read(name).decode())
    assert metadata["Version"] == trioproxy.__version__  # one source: trioproxy/_version.py
    assert metadata["License-Expression"] == "MIT"
    classifiers = metadata.get_all("Classifier") or []
    assert {"Framework :: Trio", "Framework :: Pytest", "Typing :: Typed"} <= set(classifiers)
    assert metadata.get_all("Project-URL")
    requires = metadata.get_all("Requires-Dist") or []
    assert _names(requires, "") == {"trio", "h11", "prometheus-client"}
    assert {"hypercorn", "pytest-trio"} <= _names(requires, "testing")
    assert "trio-websocket" in _names(requires, "test")


def _names(requires: list[str], extra: str) -> set[str]:
    """The distributions required with ``extra`` ("": at run time)."""
    marker = f'extra == "{extra}"'
    return {
        re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0]
        for requirement in requires
        if (marker in requirement if extra else "extra ==" not in requirement)
    }


def test_dir_lists_the_public_api() -> None:
    listed = dir(trioproxy)
    assert set(trioproxy.__all__) <= set(listed)
    assert "__version__" in listed
    assert all(getattr(trioproxy, name) is not None for name in trioproxy.__all__)


def test_the_pytest_plugin_imports_nothing_heavy_at_start_up() -> None:
    code = (
        "import sys, trioproxy.pytest_plugin\n"
        "heavy = ('trio', 'h11', 'hypercorn', 'trioproxy.app._embed')\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert result.stdout.strip() == "[]"


def test_the_fixtures_without_the_testing_extra_say_what_to_install(tmp_path: Path) -> None:
    # As if hypercorn were not installed: find_spec() then answers None, import fails.
    (tmp_path / "conftest.py").write_text("import sys\nsys.modules['hypercorn'] = None\n")
    (tmp_path / "test_app.py").write_text(
        "import pytest\n\n@pytest.mark.trio\nasync def test_it(proxied_app):\n    pass\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_app.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    message = "trioproxy's pytest fixtures need hypercorn: pip install 'trioproxy[testing]'"
    assert message in result.stdout
    assert "Traceback" not in result.stdout


def test_demo_without_the_testing_extra_says_what_to_install() -> None:
    code = (
        "import sys\nsys.modules['hypercorn'] = None\n"
        "from trioproxy.app._cli import main\nsys.exit(main(['demo']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == "trioproxy demo needs hypercorn: pip install 'trioproxy[testing]'\n"
