"""Which h11 the proxy runs on: h11-mypyc (a compiled fork) when installed, else h11.

``pip install 'trioproxy[fast]'`` adds h11-mypyc, about 1.7x faster per request here. It is
a single-maintainer alpha fork of a security-critical parser, so the whole test suite, the
fuzz suite and the conformance corpus run on both in CI. ``TRIOPROXY_PARSER=h11`` forces the
reference parser. The two packages' classes are distinct: always use ``_h11.h11``, never
``import h11``, inside the proxy.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import TYPE_CHECKING, TypeAlias

from ..config._options import parser_problem


def _choose() -> tuple[ModuleType, str, str]:
    """The module, its name, and what is wrong with TRIOPROXY_PARSER ("" if nothing): the
    command reports that as one line and stops; embedded, the reference parser runs."""
    wanted = os.environ.get("TRIOPROXY_PARSER", "auto")
    problem = parser_problem(wanted)
    if not problem and wanted in ("auto", "h11-mypyc"):
        try:
            return importlib.import_module("h11_mypyc"), "h11-mypyc", ""
        except ImportError:
            if wanted == "h11-mypyc":
                problem = (
                    "TRIOPROXY_PARSER: h11-mypyc is not installed: pip install 'trioproxy[fast]'"
                )
    return importlib.import_module("h11"), "h11", problem


if TYPE_CHECKING:
    import h11

    PARSER: str
    PARSER_PROBLEM: str
else:
    h11, PARSER, PARSER_PROBLEM = _choose()

# What `next_event` gives: an event, or the NEED_DATA or PAUSED sentinel.
NextEvent: TypeAlias = h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]

__all__ = ["PARSER", "PARSER_PROBLEM", "NextEvent", "h11"]
