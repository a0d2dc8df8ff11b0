"""The README and docs/ promises that can rot: their example tests run as a user would run
them, the README stays a front page whose every link lands, and the reference is complete."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from trioproxy.config._settings import Settings

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").rglob("*.md"))
PAGES = [README, *DOCS, ROOT / "bench" / "README.md"]
EXAMPLE = re.compile(r"<!-- example: (\S+) -->\n```python\n(.*?)```", re.DOTALL)

# What the README held before it became a front page: each is a heading of some page in docs/.
MOVED_TO_DOCS = [
    "The command line: flags, variables, signals, reload",
    "Running several workers, and reloading",
    "Configuration: `trioproxy.toml`",
    "`validate` — `/opt/section/validate.sh`",
    "What the proxy does to a request",
    "Errors",
    "Isolation: no client can take from the others",
    "Hostile input",
    "Diagnostics (stderr)",
    "Rules, trusted proxies and request IDs",
    "Trusted proxies",
    "Request IDs",
    "Health and metrics: the admin listener",
    "The container image",
    "Deploying on Section",
    "Testing your app behind trioproxy",
    "The parser: h11, or h11-mypyc",
    "Layers, the task tree and a request's path through the code",
    "Developing trioproxy",
]


def _examples() -> list[tuple[Path, str, str]]:
    return [
        (page, name, code) for page in PAGES for name, code in EXAMPLE.findall(page.read_text())
    ]


@pytest.mark.parametrize(
    ("page", "name", "code"), _examples(), ids=lambda value: getattr(value, "name", value)
)
def test_every_example_test_in_the_docs_passes_as_a_user_would_run_it(
    page: Path, name: str, code: str, tmp_path: Path
) -> None:
    (tmp_path / name).write_text(code)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"{page.name}: {name}\n{result.stdout}{result.stderr}"
    assert " passed" in result.stdout and "failed" not in result.stdout


def test_the_docs_keep_their_example_tests() -> None:
    names = {name for _, name, _ in _examples()}
    assert {"test_behind_the_proxy.py", "test_my_app.py"} <= names


def test_the_readme_embedding_lines_are_those_of_a_tested_example() -> None:
    block = re.search(r"## Embedding it\n\n```python\n(.*?)```", README.read_text(), re.DOTALL)
    assert block, "the README lost its embedding example"
    tested = "\n".join(code for _, _, code in _examples())
    for line in block.group(1).strip().splitlines():
        assert line.strip() in tested, f"README line not in any tested example: {line!r}"


def test_the_readme_is_a_front_page() -> None:
    text = README.read_text()
    assert len(text.splitlines()) < 200
    for command in ("scripts/demo", "scripts/test"):
        assert command in text


def test_every_page_the_readme_dropped_is_in_docs() -> None:
    headings = {
        line.lstrip("#").strip()
        for page in DOCS
        for line in page.read_text().splitlines()
        if line.startswith("#")
    }
    missing = [title for title in MOVED_TO_DOCS if title not in headings]
    assert not missing, f"no page in docs/ holds: {missing}"


def test_every_docs_page_is_reachable_from_the_readme() -> None:
    linked = {
        (README.parent / target).resolve()
        for target in re.findall(r"\]\(([^)#\s]+)", README.read_text())
        if not target.startswith(("http://", "https://"))
    }
    orphans = [str(page.relative_to(ROOT)) for page in DOCS if page.resolve() not in linked]
    assert not orphans, f"pages the README does not link: {orphans}"


def test_every_configuration_key_is_documented() -> None:
    text = (ROOT / "docs" / "reference" / "configuration.md").read_text()
    for section in dataclasses.fields(Settings):
        if section.name == "rules":  # an array of tables, documented by example
            assert "[[rules]]" in (ROOT / "docs" / "reference" / "rules.md").read_text()
            continue
        factory = section.default_factory
        assert callable(factory)  # every section is a dataclass made by its factory
        for key in dataclasses.fields(factory()):
            assert f"`{section.name}.{key.name}`" in text, f"{section.name}.{key.name}"


def _anchors(page: Path) -> set[str]:
    """GitHub's heading slugs: lower case, punctuation dropped, spaces as hyphens."""
    slugs = set()
    for line in page.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            slugs.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return slugs


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_links_land_inside_the_repository(page: Path) -> None:
    for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", page.read_text()):
        if target.startswith(("http://", "https://")):
            continue
        resolved = (page.parent / target).resolve() if target else page
        assert resolved.is_relative_to(ROOT), f"{page.name}: {target} leaves the repository"
        assert resolved.exists(), f"{page.name}: {target} does not exist"
        if anchor and resolved.suffix == ".md":
            assert anchor in _anchors(resolved), f"{page.name}: {target}#{anchor}: no such heading"
