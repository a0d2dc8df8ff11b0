"""The admin listener's test-harness endpoints: the journal and the runtime faults, as JSON.

Pure: the engine reads the request (head and a bounded body) and renders the answer; this
module decides it. A harness in any language drives the proxy as it drives Toxiproxy:

- ``GET /journal`` (query: ``method``, ``path``, ``path_prefix``, ``path_regex``, ``status``,
  ``fault``, ``hook``, ``rule``): the exchanges kept, oldest first; ``DELETE /journal`` forgets
  them.
- ``GET /faults``: the faults added while running, with how many requests each has seen and
  been applied to; ``POST /faults`` adds one (the body: a rule's ``fault`` table as JSON, with
  its ``match`` table beside the keys); ``DELETE /faults/NAME`` removes one, ``DELETE /faults``
  all. Adding and removing need ``admin.faults = true``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote

from ._adminanswers import MAX_BODY_BYTES, body_length, control_allowed, is_control_path
from ._faults import Fault
from ._faulttable import FaultTable
from ._journal import ExchangeMatch, Journal
from ._rulemodel import Match

__all__ = ["MAX_BODY_BYTES", "AdminControl", "body_length"]

JSON = b"application/json"

Answer = tuple[int, bytes, bytes]  # status, content type, body (as `_adminanswers`)
Problems = list[str]
# config._faultconfig.parse_runtime_fault, handed in (core does not import config).
FaultParser = Callable[
    [Any, Callable[[str, str], None]], "tuple[Fault, Match, dict[str, Any]] | None"
]

_QUERY_KEYS = ("method", "path", "path_prefix", "path_regex", "status", "fault", "hook", "rule")


def json_answer(status: int, value: Any) -> Answer:
    return status, JSON, json.dumps(value, indent=1).encode("ascii") + b"\n"


def error(status: int, message: str, problems: Problems | None = None) -> Answer:
    return json_answer(status, {"error": message, "problems": problems or [message]})


@dataclass(slots=True)
class AdminControl:
    journal: Journal | None
    faults: FaultTable
    parse: FaultParser
    writable: bool = False  # admin.faults: POST and DELETE allowed

    handles = staticmethod(is_control_path)
    allowed = staticmethod(control_allowed)

    def answer(self, method: bytes, target: bytes, body: bytes) -> Answer:
        path, _, query = target.partition(b"?")
        if method == b"HEAD":
            method = b"GET"
        if path == b"/journal":
            return self._journal(method, query)
        if path == b"/faults" and method == b"GET":
            return json_answer(200, {"faults": self.faults.as_json()})
        if method not in (b"POST", b"DELETE") or (method == b"POST" and path != b"/faults"):
            allowed = self.allowed(path).decode()
            return error(405, f"method not allowed; {path.decode()} takes {allowed}")
        if not self.writable:
            return error(403, "runtime faults are off; set admin.faults = true to add or remove")
        if method == b"POST":
            return self._add(body)
        return self._remove(path[len(b"/faults/") :])

    def _journal(self, method: bytes, query: bytes) -> Answer:
        if self.journal is None:
            return error(404, "the journal is off; set admin.journal_size to keep exchanges")
        if method == b"DELETE":
            dropped = len(self.journal)
            self.journal.clear()
            return json_answer(200, {"cleared": dropped})
        if method != b"GET":
            return error(405, "method not allowed; /journal takes GET, HEAD, DELETE")
        match = _query_match(query.decode("latin-1"))
        if isinstance(match, str):
            return error(400, match)
        return 200, JSON, b"".join(_json_pieces(self.journal.json_slices(match)))

    def in_slices(self, method: bytes, target: bytes) -> Iterator[bytes] | None:
        """The body of `answer`'s 200 (`JSON`) to a journal read or clear, in pieces of
        bounded work for an event loop to yield between (a full journal takes seconds to
        render, a quarter of one to free); None if ``method`` and ``target`` are anything
        else, or a request `answer` refuses. A clear is done now; its memory goes piecemeal."""
        path, _, query = target.partition(b"?")
        if path != b"/journal" or self.journal is None:
            return None
        if method == b"DELETE":
            cleared, freeing = self.journal.clear_in_slices()
            return _after(freeing, json_answer(200, {"cleared": cleared})[2])
        if method not in (b"GET", b"HEAD"):
            return None
        match = _query_match(query.decode("latin-1"))
        return None if isinstance(match, str) else _json_pieces(self.journal.json_slices(match))

    def _add(self, body: bytes) -> Answer:
        try:
            raw = json.loads(body)
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
            return error(400, f"fault: not JSON: {exc}")
        problems: Problems = []
        parsed = self.parse(raw, lambda key, message: problems.append(f"{key}: {message}"))
        if parsed is None:
            return error(400, "\n".join(problems), problems)
        fault, match, match_json = parsed
        try:
            added = self.faults.add(fault, match, match_json)
        except KeyError as exc:
            return error(409, str(exc.args[0]))
        return json_answer(201, added.as_json())

    def _remove(self, quoted: bytes) -> Answer:
        if not quoted:
            removed = [self.faults.remove(f.name) for f in self.faults]
            return json_answer(200, {"removed": [f.name for f in removed if f is not None]})
        name = unquote(quoted.decode("latin-1"))
        gone = self.faults.remove(name)
        if gone is None:
            active = ", ".join(f.name for f in self.faults) or "none"
            return error(404, f"no fault named {name!r}; active: {active}")
        return json_answer(200, gone.as_json())


def _json_pieces(slices: Iterator[str]) -> Iterator[bytes]:
    """A journal's JSON slices as `json_answer` writes the whole."""
    for text in slices:
        yield text.encode("ascii")
    yield b"\n"


def _after(work: Iterator[None], body: bytes) -> Iterator[bytes]:
    for _ in work:
        yield b""
    yield body


def _query_match(query: str) -> ExchangeMatch | str | None:
    """The journal filter a query string gives (None: none); a message if it is bad."""
    if not query:
        return None
    values: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in _QUERY_KEYS:
            return f"unknown journal filter {key!r}; use {', '.join(_QUERY_KEYS)}"
        if key == "status":
            if not value.isdigit():
                return f"status: expected a number, found {value!r}"
            values[key] = int(value)
        else:
            values[key] = value
    try:
        return ExchangeMatch(**values)
    except re.error as exc:
        return f"path_regex: {exc}"
