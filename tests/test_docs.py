"""The documents hold together: every relative link and anchor resolves, and the design's module map names every
module there is."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import REPO

DOCUMENTS = [REPO / "README.md", *sorted(REPO.glob("docs/*.md")), REPO / "deploy" / "runbook.md"]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(document: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings."""
    found = set()
    for heading in re.findall(r"^#+ (.*)$", document.read_text(), re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_relative_link_and_anchor_resolves(document: Path) -> None:
    for target in LINK.findall(document.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # an absolute URL
        path, _, anchor = target.partition("#")
        linked = (document.parent / path).resolve() if path else document
        assert linked.exists(), f"{document.name}: {target}"
        if anchor and linked.suffix == ".md":
            assert anchor in anchors(linked), f"{document.name}: {target}"


def test_the_design_module_map_names_every_module() -> None:
    (module_map,) = [
        block for block in re.findall(r"^```\n(.*?)^```", (REPO / "docs" / "design.md").read_text(), re.M | re.S)
        if block.startswith("exporter/")
    ]  # fmt: skip
    named = set(re.findall(r"^\s*([\w.]+/?)\s", module_map, re.MULTILINE))
    package = REPO / "exporter"
    expected = {
        p.name + ("/" if p.is_dir() else "")
        for p in package.iterdir()
        if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists())) and p.name != "__init__.py"
    }
    expected |= {p.name for p in (package / "sources").glob("*.py") if p.name != "__init__.py"}
    assert expected - named == set()


def test_the_readme_keeps_to_what_a_user_needs() -> None:
    readme = (REPO / "README.md").read_text()
    headings = re.findall(r"^## (.*)$", readme, re.MULTILINE)
    assert headings[:2] == ["Contents", "Install"]
    assert not {"Performance", "Reliability", "Development"} & set(headings)
    # The two set-up commands come first.
    assert readme.index("make run ") < readme.index("## ") and readme.index("make test ") < readme.index(
        "## "
    )
