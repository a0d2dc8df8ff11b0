"""The bytecode counter behind ``bench/instructions.py --opcodes``: bench/_opcount.py runs a
real program under its tracer, and the report divides the difference of two runs by the
requests between them."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

from bench.instructions import OPCOUNT, _read_opcodes, opcodes_report

PROGRAM = """
def step(n):
    total = 0
    for i in range(n):
        total += i
    return total

for _ in range({calls}):
    step(10)
"""


def _count(tmp_path: Path, calls: int) -> tuple[Counter[str], Counter[str]]:
    script = tmp_path / "program.py"  # (one path: functions are keyed by it)
    script.write_text(PROGRAM.format(calls=calls))
    out = tmp_path / f"counts{calls}.tsv"
    subprocess.run([sys.executable, str(OPCOUNT), str(out), str(script)], check=True, timeout=60)
    return _read_opcodes(out.read_text(encoding="utf-8"))


def test_bytecodes_per_call_come_from_two_runs(tmp_path: Path) -> None:
    few, many = _count(tmp_path, 3), _count(tmp_path, 13)
    step = next(where for where in many[0] if where.endswith(":step"))
    assert many[1][step] == 13 and few[1][step] == 3
    per_call = (many[0][step] - few[0][step]) / 10
    assert per_call == few[0][step] / 3  # the same bytecodes each call
    assert per_call > 30  # ten turns of a loop, a few bytecodes each
    report = opcodes_report(few, many, 10, top=3)
    assert report[0].startswith(f"{(many[0].total() - few[0].total()) / 10:,.0f} bytecodes")
    assert any(line.endswith(step) and f"{per_call:9.1f}" in line for line in report[2:])


def test_paths_are_shortened_to_the_package() -> None:
    root = str(Path(OPCOUNT).resolve().parent.parent)
    text = (
        "7\t1\t/x/lib/python3.11/site-packages/trio/_core/_run.py:1:f\n"
        f"5\t2\t{root}/trioproxy/core/_headers.py:9:g\n"
    )
    opcodes, calls = _read_opcodes(text)
    assert opcodes == Counter({"trio/_core/_run.py:1:f": 7, "trioproxy/core/_headers.py:9:g": 5})
    assert calls["trioproxy/core/_headers.py:9:g"] == 2
