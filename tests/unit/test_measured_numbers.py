"""Every measured figure the project quotes is the one recorded in ``bench/measured.json``
(written by ``bench/run.py --record``): the docs, the module file and the benchmark report
cannot disagree, as they once did (32 MiB, 24.1 MiB; 7.9 KiB, 8.5 KiB; 3,163 rps, 2,849)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
MEASURED: dict[str, Any] = json.loads((ROOT / "bench" / "measured.json").read_text())
MYPYC = "c50-1k trioproxy[h11-mypyc]"
HOOKED = "c50-1k trioproxy+hook[h11-mypyc]"

# (file, a pattern whose one group quotes a figure, where the figure is in measured.json)
QUOTES: list[tuple[str, str, tuple[str, ...]]] = [
    (".section-proxy.yaml", r"([\d.]+) MiB idle", ("idle_rss_mib", "single")),
    (".section-proxy.yaml", r"([\d.]+) KiB per idle keep-alive", ("idle_connection_kib",)),
    (".section-proxy.yaml", r"\(([\d,]+) rps at c50 on one core", ("rps", MYPYC)),
    (".section-proxy.yaml", r"Limit: ([\d.]+) MiB \+", ("idle_rss_mib", "single")),
    (".section-proxy.yaml", r"connections\) x ([\d.]+) KiB", ("idle_connection_kib",)),
    ("docs/how-to/deploying-on-section.md", r"\(([\d.]+) MiB idle", ("idle_rss_mib", "single")),
    ("docs/how-to/deploying-on-section.md", r"([\d.]+) KiB per\s+idle", ("idle_connection_kib",)),
    (
        "docs/how-to/workers-and-reload.md",
        r"admin\s+listener off ([\d.]+) MiB",
        ("idle_rss_mib", "single"),
    ),
    (
        "docs/how-to/workers-and-reload.md",
        r"supervisor ([\d.]+) MiB",
        ("idle_rss_mib", "supervisor"),
    ),
    ("docs/how-to/workers-and-reload.md", r"each worker ([\d.]+) MiB", ("idle_rss_mib", "worker")),
    ("bench/README.md", r"\*\*trioproxy, h11-mypyc\*\* \| ([\d,]+) \|", ("rps", MYPYC)),
    ("bench/README.md", r"hook on every request, h11-mypyc \| ([\d,]+) \|", ("rps", HOOKED)),
    ("bench/README.md", r"\*\*trioproxy, h11\*\* \| ([\d,]+) \|", ("rps", "c50-1k trioproxy[h11]")),
    ("bench/README.md", r"nginx 1\.\d+ \| ([\d,]+) \|", ("rps", "c50-1k nginx")),
    ("bench/README.md", r"idle RSS ([\d.]+) MiB", ("idle_rss_mib", "single")),
    ("bench/README.md", r"([\d.]+) KiB per idle keep-alive", ("idle_connection_kib",)),
]


def _recorded(path: tuple[str, ...]) -> float:
    value: Any = MEASURED
    for key in path:
        value = value[key]
    return float(value)


@pytest.mark.parametrize(("file", "pattern", "path"), QUOTES, ids=lambda v: str(v)[:40])
def test_a_quoted_figure_is_the_recorded_one(
    file: str, pattern: str, path: tuple[str, ...]
) -> None:
    text = (ROOT / file).read_text()
    found = re.search(pattern, text)
    assert found, f"{file}: the quote {pattern!r} is gone; quote bench/measured.json or drop it"
    quoted = float(found.group(1).replace(",", ""))
    assert quoted == _recorded(path), f"{file} quotes {quoted}, bench/measured.json has {path}"


def test_the_record_says_when_and_where_it_was_made() -> None:
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", MEASURED["date"])
    assert MEASURED["commit"]
