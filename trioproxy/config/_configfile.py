"""Read trioproxy.toml safely and parse it as TOML: size, file type, encoding, syntax problems."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._lines import _LineIndex
from ._problems import ConfigError, Problem, _file_error

if TYPE_CHECKING:
    import tomllib

__all__ = ["CONFIG_FILENAME", "MAX_FILE_BYTES", "read_config"]

CONFIG_FILENAME = "trioproxy.toml"

# A real configuration is a few hundred bytes; anything past this is a mistake (a log file or a
# build artefact committed under the name), and reading it would make validation slow.
MAX_FILE_BYTES = 1 << 20


def read_config(config_dir: str | Path) -> tuple[str, bytes | None]:
    """The configuration file's path and content; None when there is none (defaults apply).
    A reload reads it once here, and every worker is given these same bytes: with the hook
    files it names, when it names any (`_hookfiles.bundle`)."""
    directory = Path(config_dir)
    path = directory / CONFIG_FILENAME
    if not _is_directory(directory):
        return str(path), None
    raw = _read_file(path)
    if raw is None or b"hook" not in raw:
        return str(path), raw
    from ._hookfiles import bundle

    return str(path), bundle(directory, raw, _read_bytes)


def _parse(raw: bytes, *, file: str) -> tuple[dict[str, Any], str]:
    if not raw:  # what tomllib makes of it; a worker of a supervisor started without a file
        return {}, ""
    # Imported here, not at the top: a proxy started without a file (all defaults) never
    # holds the TOML parser and the datetime module it brings (~0.4 MiB).
    import tomllib

    text = _decode(file, raw)
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([_syntax_problem(file, text, exc)]) from None
    except RecursionError:
        raise _file_error(file, "invalid TOML: arrays or tables nested too deeply") from None
    except ValueError as exc:  # a number too long for int() (over 4300 digits)
        raise _file_error(file, f"invalid TOML: {exc}") from None


# --- Reading the file ---------------------------------------------------------------------------


def _is_directory(directory: Path) -> bool:
    """False when the directory does not exist; ConfigError when it cannot be one."""
    try:
        mode = os.stat(directory).st_mode
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise _file_error(directory, f"cannot be used: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(mode):
        raise _file_error(directory, "is not a directory")
    return True


def _read_file(path: Path) -> bytes | None:
    """The file's content; None when there is no file; ConfigError when it cannot be used."""
    try:
        return _read_bytes(path)
    except FileNotFoundError:
        if os.path.lexists(path):
            raise _file_error(path, "is a symbolic link to a missing file") from None
        return None
    except PermissionError:
        raise _file_error(path, "cannot be read: permission denied") from None
    except OSError as exc:
        raise _file_error(path, f"cannot be read: {exc.strerror or exc}") from None


def _read_bytes(path: Path) -> bytes:
    # O_NONBLOCK: a FIFO under the config's name must not hang the validator in open().
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise _file_error(path, "is a directory, expected a TOML file")
        if not stat.S_ISREG(mode):
            raise _file_error(path, "is not a regular file, expected a TOML file")
        chunks = []
        size = 0
        while size <= MAX_FILE_BYTES and (chunk := os.read(fd, MAX_FILE_BYTES + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > MAX_FILE_BYTES:
        raise _file_error(path, f"is larger than {MAX_FILE_BYTES} bytes; is it the right file?")
    return b"".join(chunks)


def _decode(file: str, raw: bytes) -> str:
    if b"\0" in raw:
        line = raw.count(b"\n", 0, raw.index(b"\0")) + 1
        raise _file_error(file, "is a binary file (contains NUL bytes), expected TOML text", line)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        byte = raw[exc.start]
        message = f"is not UTF-8 text (byte 0x{byte:02x} at column {column}); TOML must be UTF-8"
        raise _file_error(file, message, line) from None
    # Editors on Windows may start a file with a byte-order mark, which TOML does not allow;
    # it carries no meaning, so it costs the user nothing to accept it.
    return text.removeprefix("\ufeff")


_TOML_POSITION = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)$")


def _syntax_problem(file: str, text: str, exc: tomllib.TOMLDecodeError) -> Problem:
    # Python 3.11's TOMLDecodeError has the position only in its message.
    message = str(exc)
    match = _TOML_POSITION.search(message)
    if match is None:
        return Problem(file, None, "", f"invalid TOML: {message}")
    reason = message[: match.start()]
    duplicate = _LineIndex(text).duplicate if reason.startswith("Cannot overwrite") else None
    if duplicate is not None:
        # A repeated key: tomllib points past it (at the end of the document, if it is on the
        # last line) and does not name it; the line index finds both places.
        path, line, first = duplicate
        return Problem(file, line, path, f"invalid TOML: key already set on line {first}")
    if match.group(1) is None:
        line_count = text.count("\n") + (0 if text.endswith("\n") else 1)
        return Problem(file, max(line_count, 1), "", f"invalid TOML: {reason} at end of file")
    line, column = int(match.group(1)), int(match.group(2))
    return Problem(file, line, "", f"invalid TOML: {reason} (column {column})")
