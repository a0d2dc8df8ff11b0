"""The README's promises that can rot: its example test runs, its key table is complete."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

from trioproxy.config._settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_example_test_passes_as_a_user_would_run_it(tmp_path: Path) -> None:
    text = README.read_text()
    match = re.search(r"<!-- example: (\S+) -->\n```python\n(.*?)```", text, re.DOTALL)
    assert match, "the README lost its example test"
    (tmp_path / match.group(1)).write_text(match.group(2))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", match.group(1)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_every_configuration_key_is_documented() -> None:
    text = README.read_text()
    for section in dataclasses.fields(Settings):
        if section.name == "rules":  # an array of tables, documented by example
            assert "[[rules]]" in text
            continue
        factory = section.default_factory
        assert callable(factory)  # every section is a dataclass made by its factory
        for key in dataclasses.fields(factory()):
            assert f"`{section.name}.{key.name}`" in text, f"{section.name}.{key.name}"


def test_links_stay_inside_the_repository() -> None:
    root = README.parent
    for page in (README, *sorted((root / "docs").glob("*.md"))):
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if target.startswith(("http://", "https://")):
                continue
            resolved = (page.parent / target).resolve()
            assert resolved.is_relative_to(root), f"{page.name}: {target} leaves the repository"
            assert resolved.exists(), f"{page.name}: {target} does not exist"
