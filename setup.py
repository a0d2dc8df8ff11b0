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

# The modules compiled: the request path, named one by one, so that a module added later
# stays interpreted until it is shown to work compiled (scripts/test-compiled) and is added
# here. Everything else in core/ and engine/ is interpreted; some must be:
# - engine/_h11 picks h11 or h11-mypyc under `if TYPE_CHECKING: ... else:`; mypy deems the
#   else branch unreachable, so compiled, it raises at import;
# - exception classes with class-level `status` defaults overridden by subclasses
#   (core/_errors, core/_bodylimit): a compiled subclass's default is not seen (an
#   AttributeError, or the base class's 400 for a 413);
# - core/_journal's VerificationError subclasses AssertionError (mypyc cannot), and
#   engine/_journal subclasses its Journal, which has __slots__;
# - compiled calls and methods are direct, so a test replacing one sees nothing: the engine
#   tests meter MemoryTransport.read_nowait (engine/_memory) and move_data where
#   engine/_requestbody and engine/_response call it, spy on Responder.queue_head
#   (engine/_exchange, whose retry loop also has a `continue` in a try/finally, which mypyc
#   refuses), the simulation wraps UpstreamPool.detach (engine/_pool), and tests find the
#   server's tasks by name (engine/_server: trio names a task by __qualname__, which a
#   compiled method lacks);
# - hooks and faults (core/_hookspec, engine/_hooks, core/_faults, engine/_faultrun, ...)
#   run user code and only when configured: interpreted, they cost nothing when they are not.
#
# What it gives is little, and only when modules are compiled together. Measured 2026-12-06
# (bench/instructions.py --connections 50 --parser h11-mypyc, with callgrind's cache and
# branch simulation; instructions per request, level-1 instruction-cache misses): interpreted
# 836k (24.8k); this list 804k (26.7k, -3.8 %); its core/ modules alone 833k; its engine/
# modules alone 847k and _strict, _headers, _headreader, _accesslog, _chunked alone 846k,
# both more than interpreted; this list plus engine/_exchange, _response, _requestbody and
# _pool 764k (26.1k, -8.6 %; _exchange needs its retry `continue` moved out of the
# try/finally, and the tests' spies above stop seeing calls; compiled so, a client that
# leaves is logged as an internal error in 10 engine and simulation tests: not yet known why).
# CPU time per request under wrk -c50 (user + sys from /proc, medians of 3, four interleaved
# rounds on a busy machine): this list 8 to 14 % above interpreted in three rounds (269 vs 292
# us in the quietest), 13 % below in the busiest: fewer instructions, not less time. Why: CPython
# 3.11 specialises attribute loads and method calls with inline caches, while compiled code
# does them through the generic C API (type and dict lookups, bound-method calls) whenever
# the object's class is not compiled in the same build: trio's, h11's, the configuration's
# dataclasses, the interpreted engine classes. The interpreter dispatch saved is mostly spent
# again there, and the larger machine code misses the instruction cache more (+8 %; the
# iTLB, likely worse too, is not simulated, and this VM has no hardware counters). A
# compiled coroutine awaiting one of trio's goes through a coroutine wrapper and a "send"
# method call, but that is about 3k instructions per request: not the cause.
COMPILED = (
    "trioproxy/core/_accesslog.py",
    "trioproxy/core/_addr.py",
    "trioproxy/core/_answers.py",
    "trioproxy/core/_chunked.py",
    "trioproxy/core/_headers.py",
    "trioproxy/core/_headreader.py",
    "trioproxy/core/_ratelimit.py",
    "trioproxy/core/_requestview.py",
    "trioproxy/core/_ruleengine.py",
    "trioproxy/core/_rulemodel.py",
    "trioproxy/core/_strict.py",
    "trioproxy/engine/_admin.py",  # (its client wire subclasses _peer.Wire: compiled too)
    "trioproxy/engine/_connection.py",
    "trioproxy/engine/_context.py",
    "trioproxy/engine/_diagnostics.py",
    "trioproxy/engine/_fairness.py",
    "trioproxy/engine/_peer.py",
    "trioproxy/engine/_race.py",
    "trioproxy/engine/_resolver.py",
    "trioproxy/engine/_slices.py",
    "trioproxy/engine/_transport.py",
    "trioproxy/engine/_tunnel.py",
)


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
    modules: list[object] = mypycify(list(COMPILED), opt_level="3")
    return modules


if __name__ == "__main__":
    setup(ext_modules=_ext_modules())
