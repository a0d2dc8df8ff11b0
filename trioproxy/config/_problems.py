"""A configuration problem (`Problem`), and the error carrying every one found (`ConfigError`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["ConfigError", "Problem"]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the configuration, rendered as one line by `str`."""

    file: str
    line: int | None  # 1-based; None when the file has no such line (or we could not find it)
    key_path: str  # "timeouts.upstream_connect_s"; "" for problems with the file as a whole
    message: str

    def __str__(self) -> str:
        parts = [self.file if self.line is None else f"{self.file}:{self.line}"]
        if self.key_path:
            parts.append(self.key_path)
        parts.append(self.message)
        # One problem is one line, whatever a file name or a quoted value contains.
        return ": ".join(parts).replace("\r", "\\r").replace("\n", "\\n")


class ConfigError(Exception):
    """The configuration is unusable; ``problems`` lists everything found, in file order."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(problem) for problem in problems))
        self.problems = problems


def _file_error(path: str | Path, message: str, line: int | None = None) -> ConfigError:
    return ConfigError([Problem(str(path), line, "", message)])
