"""``trioproxy validate [DIR]``: the platform's pre-receive check of a proxy configuration.

The contract (Section's proxy contract, ``/opt/section/validate.sh``): exit 0 and print nothing
when the configuration is valid; exit non-zero with the reasons on stderr when it is not. It runs
without network during a git push, so it must be quick and never print a traceback.

Exit codes: 0 valid, 1 invalid (one line per problem on stderr), 2 usage or internal error.
Imports stay minimal (the loader and the standard library; never trio or h11) so that a push is
not kept waiting on the proxy engine's import time.
"""

from __future__ import annotations

import sys

from ._config import ConfigError, load_settings

__all__ = ["DEFAULT_CONFIG_DIR", "main"]

DEFAULT_CONFIG_DIR = "/opt/proxy_config"

_USAGE = f"usage: trioproxy validate [DIR]  (default: {DEFAULT_CONFIG_DIR})\n"
_HELP = (
    _USAGE
    + "\nCheck DIR/trioproxy.toml the way the proxy reads it at startup. Prints nothing and"
    + "\nexits 0 when it is valid (or absent: defaults apply); prints one line per problem on"
    + "\nstderr and exits 1 when it is not; exits 2 on a usage or internal error.\n"
)


def main(argv: list[str] | None = None) -> int:
    """Run the validator; ``argv`` is what follows ``validate`` (default: ``sys.argv[1:]``)."""
    try:
        return _run(sys.argv[1:] if argv is None else argv)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the contract allows no traceback, even for our own bugs
        _emit(f"trioproxy validate: internal error: {type(exc).__name__}: {exc}\n")
        return 2


def _run(argv: list[str]) -> int:
    arguments = argv[1:] if argv[:1] == ["--"] else argv
    if arguments[:1] in (["-h"], ["--help"]):
        sys.stdout.write(_HELP)  # asked for: the only case that prints on stdout
        return 0
    if len(arguments) > 1 or (arguments and arguments[0].startswith("-") and argv[:1] != ["--"]):
        _emit(_USAGE)
        return 2
    config_dir = arguments[0] if arguments else DEFAULT_CONFIG_DIR
    try:
        load_settings(config_dir)
    except ConfigError as exc:
        _emit("".join(f"{problem}\n" for problem in exc.problems))
        return 1
    return 0


def _emit(text: str) -> None:
    # A closed stderr must not turn a verdict into a traceback; the exit code still tells.
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
