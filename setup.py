"""The optional compiled build: ``TRIOPROXY_MYPYC=1`` compiles the request path with mypyc.

Everything else about the package is in pyproject.toml. Without the variable the wheel is
pure Python, as always; with it, the modules below become C extensions (as h11-mypyc does
for h11), and the wheel is for this interpreter and platform only. mypy (with mypyc) must be
importable by the build, so build without isolation, in an environment that has it::

    TRIOPROXY_MYPYC=1 pip wheel --no-build-isolation --no-deps .   # or scripts/build-compiled

The interpreted sources stay in the wheel beside the extensions (an extension module wins
over a source file of the same name).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import setup

# The request path: every module of these packages except those named below.
COMPILED_PACKAGES = ("trioproxy/core", "trioproxy/engine")
INTERPRETED = {
    # Picks h11 or h11-mypyc at import under `if TYPE_CHECKING: ... else:`; mypy deems the
    # else branch unreachable, so compiled, it would raise at import.
    "trioproxy/engine/_h11.py": "the parser is chosen in a branch mypy deems unreachable",
    # Exception classes with class-level `status` defaults overridden per subclass: compiled,
    # a subclass's default is not seen (AttributeError: no attribute 'status'). Raised
    # rarely; interpreted, they cost nothing on the request path.
    "trioproxy/core/_errors.py": "class-attribute defaults of exceptions",
    # Compiled calls between compiled modules and methods of compiled classes are direct, so
    # a test that replaces one sees nothing; these stay interpreted until the tests (and the
    # simulation) get seams of their own: the memory transport's reads are metered
    # (test_mem_isolation), Responder.queue_head is spied on (test_response_heads), move_data
    # is metered where _requestbody and _response call it (test_mem_isolation), and the
    # simulation wraps UpstreamPool.detach on its pool.
    "trioproxy/engine/_memory.py": "tests meter MemoryTransport.read_nowait",
    # (The exchange's retry loop also has a `continue` inside a try/finally, which mypyc
    # refuses; the pool's wait loop was restructured.)
    "trioproxy/engine/_exchange.py": "tests spy on Responder.queue_head",
    "trioproxy/engine/_requestbody.py": "tests meter its move_data",
    "trioproxy/engine/_response.py": "tests meter its move_data",
    "trioproxy/engine/_pool.py": "the simulation wraps UpstreamPool.detach",
    # Tests find the server's tasks by name (ProxyServer.run, ProxyServer._handle); trio names
    # a task by its function's __qualname__, which a compiled method lacks. Per connection,
    # not per request.
    "trioproxy/engine/_server.py": "tests find its tasks by their names",
    "trioproxy/core/__init__.py": "a package marker",
    "trioproxy/engine/__init__.py": "a package marker",
}


def compiled_modules(root: Path) -> list[str]:
    """The source files mypyc compiles, relative to ``root`` (the project directory)."""
    files = []
    for package in COMPILED_PACKAGES:
        for path in sorted((root / package).glob("*.py")):
            relative = path.relative_to(root).as_posix()
            if relative not in INTERPRETED:
                files.append(relative)
    return files


def _ext_modules() -> list[object]:
    if os.environ.get("TRIOPROXY_MYPYC", "") not in ("1", "yes", "true"):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        sys.exit(
            "TRIOPROXY_MYPYC=1: mypyc is not importable by this build; install mypy and build "
            "without isolation (pip wheel --no-build-isolation .)"
        )
    root = Path(__file__).resolve().parent
    os.chdir(root)  # mypycify takes paths relative to the working directory
    modules: list[object] = mypycify(compiled_modules(root), opt_level="3")
    return modules


if __name__ == "__main__":
    setup(ext_modules=_ext_modules())
