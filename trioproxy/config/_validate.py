"""``trioproxy validate [DIR]``: the platform's pre-receive check of a proxy configuration (and
``trioproxy config [DIR]``, which prints the configuration it checked).

The contract (Section's proxy contract, ``/opt/section/validate.sh``): exit 0 and print nothing
when the configuration is valid; exit non-zero with the reasons on stderr when it is not. It runs
without network during a git push, so it must be quick and never print a traceback.

Exit codes: 0 valid, 1 invalid (one line per problem on stderr), 2 usage or internal error.
Imports stay minimal (the loader and the standard library; never trio or h11) so that a push is
not kept waiting on the proxy engine's import time.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._config import ConfigError, load_config, load_settings, read_config
from ._options import DEFAULT_CONFIG_DIR, OptionError, directory_problem, resolve

if TYPE_CHECKING:
    from ._settings import Settings

__all__ = ["DEFAULT_CONFIG_DIR", "Fit", "config_main", "main"]

# How the running proxy would adjust a file's settings (`limits.max_connections` fitted to the
# memory limit), given whether the file sets it: the settings and a line saying so ("": none).
# The command supplies it, since reading cgroups is not this layer's business.
Fit = Callable[["Settings", bool], tuple["Settings", str]]

_HELP = {
    "validate": "\nCheck DIR/trioproxy.toml the way the proxy reads it at startup. Prints nothing"
    " and\nexits 0 when it is valid (or absent: defaults apply); prints one line per problem on"
    "\nstderr and exits 1 when it is not; exits 2 on a usage or internal error (a DIR named"
    "\nbut missing is one).\n",
    "config": "\nPrint the configuration the proxy would run with from DIR as TOML, every default"
    "\nincluded. Problems are reported as 'trioproxy validate' reports them (exit 1).\n",
}


def main(argv: list[str] | None = None) -> int:
    """Run the validator; ``argv`` is what follows ``validate`` (default: ``sys.argv[1:]``)."""
    return _guarded("validate", _run, sys.argv[1:] if argv is None else argv)


def config_main(argv: list[str], *, fit: Fit | None = None) -> int:
    """``trioproxy config [DIR]``: the effective configuration as TOML on stdout, defaults
    included (nginx's ``-T``), adjusted by ``fit`` as the running proxy would adjust it (what
    it changed said in a comment first); an invalid one is reported as ``validate`` reports
    it."""

    def run(command: str, arguments: list[str]) -> int:
        return _config(command, arguments, fit)

    return _guarded("config", run, argv)


def _guarded(command: str, run: Callable[[str, list[str]], int], argv: list[str]) -> int:
    try:
        return run(command, argv)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the contract allows no traceback, even for our own bugs
        _emit(f"trioproxy {command}: internal error: {type(exc).__name__}: {exc}\n")
        return 2


def _directory(command: str, argv: list[str]) -> str | int:
    """The directory to check, or an exit status once the arguments were answered."""
    default = f"$TRIOPROXY_CONFIG_DIR, else {DEFAULT_CONFIG_DIR}"
    usage = f"usage: trioproxy {command} [DIR]  (default: {default})\n"
    arguments = argv[1:] if argv[:1] == ["--"] else argv
    if arguments[:1] in (["-h"], ["--help"]):
        sys.stdout.write(usage + _HELP[command])  # asked for: the only case that prints on stdout
        return 0
    wrong, config_dir = "", ""
    if arguments and arguments[0].startswith("-") and argv[:1] != ["--"]:
        wrong = f"unknown option {arguments[0]!r} (a directory starting with '-' goes after --)"
    elif len(arguments) > 1:
        named = " ".join(repr(a) for a in arguments)
        wrong = f"expected at most one directory, got {len(arguments)}: {named}"
    else:
        config_dir, wrong = _chosen(arguments)
    if wrong:
        _emit(f"trioproxy {command}: {wrong}\n{usage}")
        return 2
    return config_dir


def _chosen(arguments: list[str]) -> tuple[str, str]:
    """The directory and what is wrong with it ("": nothing), chosen as the proxy chooses:
    the argument, else TRIOPROXY_CONFIG_DIR, else the default; one named must exist."""
    if arguments:
        return arguments[0], directory_problem(arguments[0])
    try:
        default = {"config_dir": DEFAULT_CONFIG_DIR}
        values, named = resolve({"config_dir": None}, os.environ, defaults=default)
    except OptionError as exc:  # the variable set, but empty
        return "", str(exc)
    problem = directory_problem(values["config_dir"]) if named else ""
    return values["config_dir"], problem and f"TRIOPROXY_CONFIG_DIR: {problem}"


def _run(command: str, argv: list[str]) -> int:
    config_dir = _directory(command, argv)
    if isinstance(config_dir, int):
        return config_dir
    try:
        settings = load_settings(config_dir)
        if settings.rules.has_hooks:
            # Hooks: their files' import-time code and examples run too, in a bounded child
            # (which reads the settings from the same bytes as it runs the examples on).
            from ._hookimport import check_hook_imports

            file, raw = read_config(config_dir)
            check_hook_imports(settings, file, examples_of=raw)
    except ConfigError as exc:
        _emit("".join(f"{problem}\n" for problem in exc.problems))
        return 1
    return 0


def _config(command: str, argv: list[str], fit: Fit | None) -> int:
    config_dir = _directory(command, argv)
    if isinstance(config_dir, int):
        return config_dir
    try:
        settings, data = load_config(config_dir)
    except ConfigError as exc:
        _emit("".join(f"{problem}\n" for problem in exc.problems))
        return 1
    from ._configdump import render_toml

    said = ""
    if fit is not None:
        limits = data.get("limits")
        explicit = isinstance(limits, dict) and "max_connections" in limits
        settings, said = fit(settings, explicit)
    comment = f"# {said}\n" if said else ""
    sys.stdout.write(comment + render_toml(settings, data.get("rules", [])))
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
