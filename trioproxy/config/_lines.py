"""Find the line of a dotted key path in TOML text, and a key set twice (tomllib gives neither)."""

from __future__ import annotations

import re
from collections.abc import Iterator

# tomllib returns plain dicts, without positions. These patterns find `[table]` headers and
# `key = ` lines well enough for messages; a file they misread only loses its line numbers.
_HEADER = re.compile(r"\s*\[\[?\s*([^\[\]#=]+?)\s*\]\]?\s*(?:#.*)?$")
_SIMPLE_KEY = r"""(?:[A-Za-z0-9_-]+|"[^"\n]*"|'[^'\n]*')"""  # bare, "basic" or 'literal'
_KEY_LINE = re.compile(rf"\s*({_SIMPLE_KEY}(?:\s*\.\s*{_SIMPLE_KEY})*)\s*=")
_KEY_PART = re.compile(r"\"([^\"]*)\"|'([^']*)'|([A-Za-z0-9_-]+)")


class _LineIndex:
    """Maps dotted key paths to the line that first sets (or opens) them.

    Tables of an array are numbered from 1, as problems name them: the second ``[[rules]]``
    opens ``rules[2]``, and a later ``[rules.match]`` is ``rules[2].match``.
    """

    def __init__(self, text: str) -> None:
        self._lines: dict[str, int] = {}
        self.duplicate: tuple[str, int, int] | None = None  # (path, line, first line)
        self._arrays: dict[str, int] = {}  # array-of-tables path -> tables opened so far
        table = ""
        for number, line in _code_lines(text):
            header = _HEADER.match(line)
            if header is not None:
                table = self._open(_normalise_key(header.group(1)), line, number)
                continue
            key = _KEY_LINE.match(line)
            if key is not None:
                path = ".".join(filter(None, (table, _normalise_key(key.group(1)))))
                self._record(path, number)
                # A dotted key (`match.path = ...`) also opens the tables it names; a problem
                # with `match` as a whole belongs on its first line, not the [[rules]] header.
                while (path := path.rpartition(".")[0]) and path != table:
                    self._lines.setdefault(path, number)

    def _open(self, path: str, line: str, number: int) -> str:
        """The indexed path of the table a header opens; records where it starts."""
        parent, dot, leaf = path.rpartition(".")
        path = self._in_array(parent) + dot + leaf
        if line.lstrip().startswith("[["):
            self._lines.setdefault(path, number)  # the array as a whole: its first table
            count = self._arrays[path] = self._arrays.get(path, 0) + 1
            path = f"{path}[{count}]"
        self._lines.setdefault(path, number)
        return path

    def _in_array(self, path: str) -> str:
        # [rules.match] belongs to the latest [[rules]]: find the longest array prefix.
        parts = path.split(".") if path else []
        for end in range(len(parts), 0, -1):
            prefix = ".".join(parts[:end])
            if prefix in self._arrays:
                return ".".join([f"{prefix}[{self._arrays[prefix]}]", *parts[end:]])
        return path

    def _record(self, path: str, number: int) -> None:
        first = self._lines.setdefault(path, number)
        if first != number and self.duplicate is None:
            self.duplicate = (path, number, first)

    def find(self, path: str) -> int | None:
        # An inline table (`timeouts = {connect_s = 5}`) has no line of its own per key: fall
        # back to the line of the nearest enclosing key.
        while path:
            if path in self._lines:
                return self._lines[path]
            # rules[2] written inline (`rules = [{...}, {...}]`) has no line of its own either:
            # fall back to the array's.
            if path.endswith("]") and "[" in path:
                path = path[: path.rindex("[")]
            else:  # a key that merely ends in "]" (a quoted TOML key) is a plain key
                path = path.rpartition(".")[0]
        return None


def _normalise_key(text: str) -> str:
    # Exactly one of the three groups matched; the others are "".
    return ".".join("".join(part) for part in _KEY_PART.findall(text))


def _code_lines(text: str) -> Iterator[tuple[int, str]]:
    """Numbered lines, skipping those inside multi-line strings (their text is not TOML)."""
    in_string: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        starts_inside = in_string is not None
        for match in re.finditer(r'"""|\'\'\'', line):
            delimiter = match.group()
            if in_string is None:
                in_string = delimiter
            elif in_string == delimiter:
                in_string = None
        if not starts_inside:
            yield number, line
