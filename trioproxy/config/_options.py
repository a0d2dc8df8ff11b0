"""The command's options: each value from its flag, else its TRIOPROXY_ variable, else the default,
checked the same way whichever it came from (pure; no trio).

An error names where the bad value came from (``--workers`` or ``TRIOPROXY_WORKERS``), so an
operator who never typed a flag is not told about one.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from ..core._addr import parse_host_port

__all__ = [
    "DEFAULT_CONFIG_DIR",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "OPTIONS",
    "Option",
    "OptionError",
    "directory_problem",
    "parse_upstream",
    "parse_workers",
    "parser_problem",
    "resolve",
]

# What the platform contract fixes: public HTTP on port 80, upstream next-hop:80.
DEFAULT_CONFIG_DIR = "/opt/proxy_config"
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")


class OptionError(ValueError):
    """A bad option value; ``str()`` is the whole one-line message, source named first."""


def parse_listen(text: str) -> tuple[str, int]:
    return parse_host_port(text)  # port 0: the kernel picks a free one


def parse_upstream(text: str) -> tuple[str, int]:
    if "://" in text:
        rest = text.split("://", 1)[1].split("/", 1)[0]
        hint = rest or "HOST:PORT"
        raise ValueError(f"expected HOST:PORT, not a URL (try {hint!r}), got {text!r}")
    try:
        host, port = parse_host_port(text)
    except ValueError as exc:  # port 0 is for listening (pick one), never for connecting
        raise ValueError(str(exc).replace("from 0 to", "from 1 to")) from None
    if port == 0:
        raise ValueError(f"port must be a number from 1 to 65535, got {text!r}")
    if not host.isascii():  # (it goes upstream as the Host of HTTP/1.0 requests, in ASCII)
        raise ValueError(f"host must be ASCII (a non-ASCII name in its xn-- form), got {text!r}")
    return host, port


def parse_workers(text: str) -> int | None:
    """A count of at least 1, or ``auto`` (None: the process model picks the count)."""
    if text == "auto":
        return None
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise ValueError(f"expected a whole number of at least 1 or 'auto', got {text!r}")
    return int(text)


def parser_problem(wanted: str) -> str:
    """What is wrong with ``TRIOPROXY_PARSER`` ("" if nothing), found without importing a
    parser: the ``--workers`` supervisor never imports h11 (`_h11` chooses, and imports)."""
    if wanted not in ("auto", "h11", "h11-mypyc"):
        return f"TRIOPROXY_PARSER: expected auto, h11 or h11-mypyc, got {wanted!r}"
    if wanted == "h11-mypyc" and importlib.util.find_spec("h11_mypyc") is None:
        return "TRIOPROXY_PARSER: h11-mypyc is not installed: pip install 'trioproxy[fast]'"
    return ""


def _choice(allowed: tuple[str, ...]) -> Callable[[str], str]:
    # "" (not set: decided later) is allowed where offered, but is no choice to list.
    listed = ", ".join(choice for choice in allowed if choice)

    def parse(text: str) -> str:
        if text.lower() not in allowed:
            raise ValueError(f"expected one of {listed}, got {text!r}")
        return text.lower()

    return parse


def directory_problem(path: str) -> str:
    """Why ``path``, named by an operator, cannot be the configuration directory ("" if it
    can): a file there is not a missing directory."""
    if os.path.isdir(path):
        return ""
    return f"{path}: {'is not a directory' if os.path.exists(path) else 'no such directory'}"


def _directory(text: str) -> str:
    if not text:
        raise ValueError("expected a directory, got ''")
    return text


class Option(NamedTuple):  # (not a dataclass: the supervisor would import inspect, 1 MiB)
    name: str  # the attribute: "log_level"
    default: str
    parse: Callable[[str], Any]
    metavar: str
    help: str

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return "TRIOPROXY_" + self.name.upper()


_LISTEN_HELP = "public address; port 0 picks one"
_WORKERS_HELP = "processes accepting from one listening socket, or auto"
_LEVEL_HELP = "stderr level: " + ", ".join(LOG_LEVELS)

OPTIONS: tuple[Option, ...] = (
    Option("listen", "0.0.0.0:80", parse_listen, "HOST:PORT", _LISTEN_HELP),
    Option("upstream", "next-hop:80", parse_upstream, "HOST:PORT", "next hop, plain HTTP"),
    Option("config_dir", DEFAULT_CONFIG_DIR, _directory, "DIR", "holds trioproxy.toml"),
    Option("workers", "1", parse_workers, "N", _WORKERS_HELP),
    Option("log_level", "info", _choice(LOG_LEVELS), "LEVEL", _LEVEL_HELP),
    Option("log_format", "", _choice(("", *LOG_FORMATS)), "FORMAT", "stderr: text or json"),
)


def resolve(
    flags: Mapping[str, str | None],
    environ: Mapping[str, str],
    *,
    defaults: Mapping[str, str] | None = None,
) -> tuple[dict[str, Any], set[str]]:
    """Every option's parsed value, and the names that were set (flag or variable).

    ``flags`` maps an option's name to what its flag said (None: not given). Raises
    OptionError naming the flag or the variable.
    """
    values: dict[str, Any] = {}
    explicit: set[str] = set()
    for option in OPTIONS:
        if option.name not in flags:
            continue  # a command that does not offer this option
        given = flags[option.name]
        source, text = option.flag, given
        if given is None:
            source, text = option.env, environ.get(option.env)
        if text is None:
            text = (defaults or {}).get(option.name, option.default)
        else:
            explicit.add(option.name)
        try:
            values[option.name] = option.parse(text)
        except ValueError as exc:
            raise OptionError(f"{source}: {exc}") from None
    return values, explicit
