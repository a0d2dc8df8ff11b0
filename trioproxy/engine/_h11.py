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
from collections.abc import Iterable
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
    from h11._headers import Headers as Fields

    PARSER: str
    PARSER_PROBLEM: str
else:
    h11, PARSER, PARSER_PROBLEM = _choose()
    # A private class of both parsers (h11 0.16, h11-mypyc 0.17): an event's header fields,
    # as (name as spelled, lower-case name, value) triples. tests/unit/test_h11_fields.py
    # fails if either changes it.
    Fields = importlib.import_module(h11.__name__ + "._headers").Headers

# What `next_event` gives: an event, or the NEED_DATA or PAUSED sentinel.
NextEvent: TypeAlias = h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]


def sendable(headers: Iterable[tuple[bytes, bytes]]) -> Fields:
    """Header fields known valid, as an event takes them without checking them again (with
    ``_parsed=True``): h11 then neither validates nor normalises them, so they must already
    be what its own normalisation leaves (names tokens; values without CR, LF, NUL or outer
    whitespace; one Content-Length of digits; Transfer-Encoding only "chunked", lower-case).
    Given a list of pairs instead, h11 normalises them again, even with ``_parsed=True``:
    a third to a half of a response head's cost (h11-mypyc)."""
    return Fields([(name, name.lower(), value) for name, value in headers])


def fields_of(headers: h11._headers.Headers) -> list[tuple[bytes, bytes, bytes]]:
    """A parsed message's fields with their lower-case names, as h11 holds them (not a copy:
    read, never change)."""
    return headers._full_items


# Events are frozen, and h11 reads the events it sends without changing or keeping them:
# one end of a message without trailers serves every message.
END_OF_MESSAGE = h11.EndOfMessage()

__all__ = [
    "END_OF_MESSAGE",
    "PARSER",
    "PARSER_PROBLEM",
    "Fields",
    "NextEvent",
    "fields_of",
    "h11",
    "sendable",
]
