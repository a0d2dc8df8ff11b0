"""The command's shared parts: its parser and options, diagnostics on stderr, loading the config.

Used by the command itself (`_cli`), one process's run (`_run`), the demo and the supervisor's
config check (`_confcheck`). Neither trio, h11 nor the configuration loader at import: the
supervisor of --workers N imports this module.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from .._version import __version__
from ..config._options import (
    DEFAULT_CONFIG_DIR,
    OPTIONS,
    OptionError,
    directory_problem,
    parser_problem,
    resolve,
)
from ..engine._diagnostics import FailureAggregator, JsonFormatter, TextFormatter

if TYPE_CHECKING:
    from ..config._settings import Settings

log = logging.getLogger("trioproxy")


class _UsageError(Exception):
    """An argument argparse refused; `parse_options` writes it as diagnostics are written."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line that says what was wrong."""

    _adding = False

    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{message} (see {self.prog} --help)")

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        self._adding = True
        try:
            return super().add_argument(*args, **kwargs)
        finally:
            self._adding = False

    def _get_formatter(self) -> argparse.HelpFormatter:
        # add_argument makes a help formatter only to check a metavar, which no width changes;
        # the real one asks `shutil` for the terminal's, and importing shutil brings zlib, bz2
        # and lzma (~0.4 MiB) into the supervisor, which never prints help.
        if self._adding:
            return argparse.HelpFormatter(self.prog, width=80)
        return super()._get_formatter()


def build_parser(
    prog: str = "trioproxy",
    *,
    options: Sequence[str] | None = None,
    defaults: Mapping[str, str] | None = None,
    what: str = "HTTP/1.1 reverse proxy.",
) -> argparse.ArgumentParser:
    """Flags keep their text (None when absent): `resolve` checks flag and variable alike."""
    parser = _Parser(
        prog=prog,
        description=f"{what} Each option can also be set as TRIOPROXY_<NAME> "
        "(TRIOPROXY_LOG_LEVEL=debug); a flag wins over its variable.",
        epilog="Subcommands: 'trioproxy validate [DIR]' checks a configuration directory; "
        "'trioproxy config [DIR]' prints the effective configuration as TOML; "
        "'trioproxy demo' runs the proxy in front of a built-in demo origin.",
    )
    parser.add_argument("-V", "--version", action="version", version=f"trioproxy {__version__}")
    for option in OPTIONS:
        if options is not None and option.name not in options:
            continue
        default = (defaults or {}).get(option.name, option.default) or "from the configuration"
        parser.add_argument(
            option.flag,
            metavar=option.metavar,
            help=f"{option.help} (default {default}; {option.env})",
        )
    return parser


def parse_options(
    parser: argparse.ArgumentParser, argv: Sequence[str], defaults: Mapping[str, str] | None = None
) -> tuple[argparse.Namespace, set[str]] | None:
    """Flags, then TRIOPROXY_ variables, then defaults; None after a one-line error on stderr."""
    try:
        flags = vars(parser.parse_args(argv))
    except _UsageError as exc:
        _argument_error(parser.prog, str(exc), argv)
        return None
    try:
        values, explicit = resolve(flags, os.environ, defaults=defaults)
    except OptionError as exc:
        _argument_error(parser.prog, str(exc), argv)
        return None
    problem = parser_problem(os.environ.get("TRIOPROXY_PARSER", "auto"))
    if problem:
        _argument_error(parser.prog, problem, argv)
        return None
    return argparse.Namespace(**values), explicit


def _argument_error(prog: str, message: str, argv: Sequence[str]) -> None:
    """One line on stderr: plain, or a JSON diagnostic when the diagnostics asked for were JSON
    (a log collector expecting JSON lines must not meet a stray text line)."""
    if _wanted_format(argv) == "json":
        configure_diagnostics("info", "json")
        log.error("%s: %s", prog, message)
    else:
        sys.stderr.write(f"{prog}: {message}\n")


def _wanted_format(argv: Sequence[str]) -> str:
    """The diagnostics format the arguments asked for, found as far as arguments that did not
    parse allow: the flag, else its variable, else the configuration's [diagnostics] format."""
    wanted = _flag_text(argv, "--log-format") or os.environ.get("TRIOPROXY_LOG_FORMAT")
    if wanted:
        return wanted.lower()
    directory = _flag_text(argv, "--config-dir") or os.environ.get("TRIOPROXY_CONFIG_DIR")
    # Only on this error path: the supervisor stays small otherwise. The loader's reader
    # refuses what must not be read (a FIFO, a huge file); the rest is not checked here.
    import tomllib

    from ..config._config import ConfigError, read_config

    try:
        raw = read_config(directory or DEFAULT_CONFIG_DIR)[1] or b""
        return str(tomllib.loads(raw.decode())["diagnostics"]["format"]).lower()
    except (ConfigError, ValueError, KeyError, TypeError):  # unreadable, invalid or not set
        return ""


def _flag_text(argv: Sequence[str], flag: str) -> str | None:
    """What the last ``flag VALUE`` or ``flag=VALUE`` before any ``--`` said (None: absent)."""
    text = None
    for index, arg in enumerate(argv):
        if arg == "--":
            break
        if arg == flag and index + 1 < len(argv):
            text = argv[index + 1]
        elif arg.startswith(flag + "="):
            text = arg[len(flag) + 1 :]
    return text


def configure_diagnostics(level: str, fmt: str = "") -> None:
    """Diagnostics go to stderr, one line each with a time and a level, as text or JSON;
    stdout is the access log's. Identical upstream failures are aggregated (`_diagnostics`).
    Lines are queued for a writer thread (`_logwriter.StderrHandler`): never a blocking write."""
    from ._logwriter import stderr_handler

    handler = stderr_handler(diagnostic_line)
    name = os.environ.get("TRIOPROXY_WORKER_NAME", "")  # set by the --workers supervisor
    tag = f"trioproxy[{name}]" if name else "trioproxy"
    handler.setFormatter(JsonFormatter(name) if fmt == "json" else TextFormatter(tag))
    handler.addFilter(FailureAggregator(handler.handle))
    log.handlers[:] = [handler]
    log.setLevel(level.upper())
    log.propagate = False


def diagnostic_line(level: int, message: str) -> str:
    """``message`` rendered as the stderr handler renders a line (for the log writer thread)."""
    record = log.makeRecord(log.name, level, "", 0, message, (), None)
    handler = log.handlers[0] if log.handlers else None
    return handler.format(record) if handler else f"trioproxy: {message}"


def load_config(config_dir: str, *, explicit: bool) -> Settings | None:
    """The settings, or None after one line per problem; a named directory must exist."""
    from ..config._config import ConfigError, load_settings

    wrong = directory_problem(config_dir) if explicit else ""
    if wrong:
        log.error("config: %s", wrong)
        return None
    from ..config._config import CONFIG_FILENAME
    from ..config._hookimport import check_hook_imports

    try:
        settings = load_settings(config_dir)
        return check_hook_imports(settings, os.path.join(config_dir, CONFIG_FILENAME))
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("config: %s", problem)
        return None


def check_config(config_dir: str) -> tuple[str, bytes | None, Settings] | None:
    """A reload's configuration, read and checked as ``validate`` does it; None (after one
    line per problem and the verdict on stderr) when it is invalid."""
    from ..config._config import ConfigError, read_config, settings_from_bytes
    from ..config._hookimport import check_hook_imports
    from ..config._reload import rejected
    from ..config._settings import Settings

    file = str(config_dir)
    try:
        file, raw = read_config(config_dir)
        settings = Settings() if raw is None else settings_from_bytes(raw, file=file)
        return file, raw, check_hook_imports(settings, file)
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("config: %s", problem)
        log.error("%s", rejected(file, len(exc.problems)))
        return None
