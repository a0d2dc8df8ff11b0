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
from typing import TYPE_CHECKING, NoReturn

from .._version import __version__
from ..config._options import OPTIONS, OptionError, parser_problem, resolve
from ..engine._diagnostics import FailureAggregator, JsonFormatter, TextFormatter

if TYPE_CHECKING:
    from ..config._settings import Settings

log = logging.getLogger("trioproxy")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line that says what was wrong."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


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
    flags = vars(parser.parse_args(argv))
    try:
        values, explicit = resolve(flags, os.environ, defaults=defaults)
    except OptionError as exc:
        sys.stderr.write(f"{parser.prog}: {exc}\n")
        return None
    problem = parser_problem(os.environ.get("TRIOPROXY_PARSER", "auto"))
    if problem:
        sys.stderr.write(f"{parser.prog}: {problem}\n")
        return None
    return argparse.Namespace(**values), explicit


def configure_diagnostics(level: str, fmt: str = "") -> None:
    """Diagnostics go to stderr, one line each with a time and a level, as text or JSON;
    stdout is the access log's. Identical upstream failures are aggregated (`_diagnostics`)."""
    handler = logging.StreamHandler(sys.stderr)
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

    if explicit and not os.path.isdir(config_dir):
        log.error("config: %s: no such directory", config_dir)
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
