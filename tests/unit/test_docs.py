"""The docs live in the repository and refer only to files inside it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sluiceway import exit_codes
from tests.repo import ROOT

SKIP = {".git", ".venv", "build", "dist", ".sluiceway", ".hypothesis", "demo-lake"}
MARKDOWN = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(#[^)\s]*)?\)")


def repository_files() -> list[Path]:
    found = []
    for path in ROOT.rglob("*"):
        parts = path.relative_to(ROOT).parts
        if path.is_file() and not SKIP & set(parts) and not any(p.endswith("_cache") or
                                                                p.endswith(".egg-info")
                                                                for p in parts):  # fmt: skip
            found.append(path)
    return found


def test_nothing_refers_to_the_design_notes_outside_the_repository() -> None:
    outside = re.compile(r"DESIGN\.md|\.\./shared")
    offenders = []
    for path in repository_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        if outside.search(text) and path != Path(__file__):
            offenders.append(str(path.relative_to(ROOT)))
    assert not offenders


@pytest.mark.parametrize("doc", MARKDOWN, ids=lambda p: p.name)
def test_file_links_stay_inside_the_repository_and_resolve(doc: Path) -> None:
    for target, _anchor in LINK.findall(doc.read_text()):
        if target.startswith("https://"):
            continue  # a public citation, not a file of some workspace
        resolved = (doc.parent / target).resolve()
        assert resolved.is_relative_to(ROOT) and resolved.exists(), f"{doc.name}: {target}"


def test_the_readme_documents_every_exit_code() -> None:
    readme = (ROOT / "README.md").read_text()
    codes = [exit_codes.OK, exit_codes.USAGE, exit_codes.BAD_INPUT, exit_codes.TRANSIENT,
             exit_codes.RUN_FAILED, exit_codes.DIFFERENCES]  # fmt: skip
    for code in codes:
        assert re.search(rf"^\| {code} \| ", readme, re.M), f"exit code {code} missing"


def test_the_docs_a_newcomer_needs_exist() -> None:
    for name in ("architecture.md", "configuration.md", "operations.md", "guide.md"):
        assert (ROOT / "docs" / name).is_file()
    assert (ROOT / "CHANGELOG.md").is_file() and (ROOT / "LICENSE").is_file()
