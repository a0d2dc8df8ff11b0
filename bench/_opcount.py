"""Run a Python program with its main thread's bytecodes counted per function.

``python bench/_opcount.py OUT -m MODULE ARGS...`` or ``... OUT SCRIPT ARGS...``

At exit (or SIGTERM, for a program that installs no handler of its own) it writes one line
per function that ran: ``opcodes<TAB>calls<TAB>file:line:qualname``, most opcodes first.
`bench/instructions.py --opcodes` runs the proxy under it. The tracer makes the program
tens of times slower: count with it, never time it.

Standalone on purpose (no ``bench`` import): it runs as the proxy's interpreter entry point.
"""

from __future__ import annotations

import atexit
import os
import runpy
import signal
import sys
from collections import Counter
from types import CodeType, FrameType
from typing import Any

opcodes: Counter[CodeType] = Counter()
calls: Counter[CodeType] = Counter()
_written: list[str] = []


def _count_opcode(frame: FrameType, event: str, arg: Any) -> Any:
    if event == "opcode":
        opcodes[frame.f_code] += 1
    return _count_opcode


def _count_call(frame: FrameType, event: str, arg: Any) -> Any:
    calls[frame.f_code] += 1
    frame.f_trace_opcodes = True
    return _count_opcode


def write_counts(path: str) -> None:
    """Write the counts once (atexit and SIGTERM may both ask)."""
    sys.settrace(None)
    if _written:
        return
    _written.append(path)
    with open(path, "w", encoding="utf-8") as out:
        for code, n in opcodes.most_common():
            where = f"{code.co_filename}:{code.co_firstlineno}:{code.co_qualname}"
            out.write(f"{n}\t{calls[code]}\t{where}\n")


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    write_counts(out_path)
    os._exit(0)


if __name__ == "__main__":
    out_path = sys.argv[1]
    if sys.argv[2] == "-m":
        target, run_module = sys.argv[3], True
        sys.argv = [target, *sys.argv[4:]]
    else:
        target, run_module = sys.argv[2], False
        sys.argv = [target, *sys.argv[3:]]
    atexit.register(write_counts, out_path)
    signal.signal(signal.SIGTERM, _on_sigterm)  # (a program's own handler replaces this one)
    sys.settrace(_count_call)
    if run_module:
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    else:
        runpy.run_path(target, run_name="__main__")
