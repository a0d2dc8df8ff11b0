"""tests/README.md indexes every test file by subject: a new file says what it is about."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_test_file_is_in_the_index() -> None:
    index = (ROOT / "tests" / "README.md").read_text()
    files = [*ROOT.glob("tests/*/test_*.py"), *ROOT.glob("fuzz/test_*.py")]
    missing = [str(f.relative_to(ROOT)) for f in files if f"`{f.name}`" not in index]
    assert not missing, f"add a line to tests/README.md for: {missing}"
