"""``python -m trioproxy.app._confcheck DIR [FORMAT]``: the ``--workers N`` supervisor's check.

The supervisor stays small by never importing the configuration loader (TOML, the schema, the
rules: about 4 MiB); it runs this module instead, at startup and on each SIGHUP. It reads
DIR/trioproxy.toml with the same loader as ``validate`` and the proxy. Problems go to stderr,
one line each, as the proxy writes them (in FORMAT, text or json; text if empty), and the
exit status is 2. Otherwise it writes one marshal'd tuple on stdout, ``(file, raw,
admin_listen, drain_s, line, warn, diagnostics_format)``: the bytes the workers will be given,
the settings the supervisor itself needs, and the reload's stderr line (`_reload.summary`)
with whether it is a warning.

Standard input carries ``(running, previous)`` (marshal'd), the bytes the workers were started
with and the bytes they run now (None: defaults), or nothing at startup: changes are counted
against ``previous``, and restart-only keys against ``running``. A reload that finds no file
while the workers run one is rejected (`_reload.missing`).
"""

from __future__ import annotations

import marshal
import sys

from ..config._config import ConfigError, read_config, settings_from_bytes
from ..config._hookimport import check_hook_imports
from ..config._reload import RESTART_ONLY, changed_keys, missing, rejected, summary
from ..config._settings import Settings
from ._command import configure_diagnostics, log


def _settings(file: str, raw: bytes | None) -> Settings:
    return Settings() if raw is None else settings_from_bytes(raw, file=file)


def main(argv: list[str]) -> int:
    configure_diagnostics("info", argv[1] if len(argv) > 1 else "")
    config_dir = argv[0]
    stdin = sys.stdin.buffer.read()
    file = config_dir
    try:
        file, raw = read_config(config_dir)
        new = check_hook_imports(_settings(file, raw), file)
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("config: %s", problem)
        if stdin:
            log.error("%s", rejected(file, len(exc.problems)))
        return 2
    line, warn = "", False
    if stdin:
        running_raw, previous_raw = marshal.loads(stdin)
        running, previous = _settings(file, running_raw), _settings(file, previous_raw)
        if raw is None and (gone := missing(file, previous)) is not None:
            log.warning("%s", gone)
            return 2
        changed = [k for k in changed_keys(previous, new) if k not in RESTART_ONLY]
        changed += [k for k in changed_keys(running, new) if k in RESTART_ONLY]
        warn, line = summary(file, changed)
    settled = (new.admin.listen, new.timeouts.drain_s)
    answer = (file, raw, *settled, line, warn, new.diagnostics.format)
    sys.stdout.buffer.write(marshal.dumps(answer, 4))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
