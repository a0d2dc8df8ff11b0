"""``python -I -m trioproxy.hooks._child``: import hook files in a bounded child process.

``trioproxy validate`` and a reload's check run this so that a hook file's import-time code
(which may do anything) runs away from the proxy and the validator: with CPU and memory
limits, no network, no subprocess, and under the parent's timeout. Standard input carries
the marshal'd ``(((file, name, source), ...), examples_of)``: with ``examples_of`` (the
configuration's file name and bytes) the files' ``EXAMPLES`` run too (`_examples`). Each
problem is one ``file:line: message`` line on standard output; the exit status is 1 when
there are any.
"""

from __future__ import annotations

import marshal
import sys

CPU_S = 10
MEMORY_BYTES = 1 << 30

# Audit events refused in the child: the network, new processes.
_REFUSED = ("socket.", "subprocess.", "os.system", "os.exec", "os.posix_spawn", "os.fork")


def _refuse(event: str, args: object) -> None:
    if (event.startswith(_REFUSED) and event != "socket.__new__") or event == "socket.connect":
        raise PermissionError(f"{event} is not allowed while a hook file is imported")


def _limit() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_CPU, (CPU_S, CPU_S))
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = MEMORY_BYTES if hard == resource.RLIM_INFINITY else min(MEMORY_BYTES, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def main() -> int:
    hooks, examples_of = marshal.loads(sys.stdin.buffer.read())
    _limit()
    # Imported before the audit hook goes in: our own modules, and what the examples need.
    from ..core._rulemodel import HookAction
    from ._load import HookLoadError, _run_module, load_hooks

    if examples_of is not None:
        from ..config._config import settings_from_bytes
        from ._examples import Example, run_examples

    sys.addaudithook(_refuse)
    problems = []
    for file, name, source in hooks:
        try:
            load_hooks([HookAction(file, name, source=source)])
        except HookLoadError as exc:
            problems.append(str(exc))
        except BaseException as exc:
            problems.append(f"{file}: importing failed: {exc!r}")
    if not problems and examples_of is not None:
        toml_file, raw = examples_of
        examples = []
        for file, source in {file: source for file, _, source in hooks}.items():
            found = _run_module(file, source).get("EXAMPLES", ())
            examples += [(file, e) for e in found if isinstance(e, Example)]
        if examples:
            problems += run_examples(settings_from_bytes(raw, file=toml_file), examples)
    sys.stdout.write("".join(f"{line}\n" for line in problems))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
