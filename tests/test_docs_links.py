"""Every relative link in the README and docs/ leads somewhere: the file exists and, with a #fragment, one of its
headings has that anchor (GitHub's rule: lower case, punctuation dropped, spaces to hyphens). A user's clone
has only these files, so a moved section must not leave the README pointing at nothing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*$", re.MULTILINE)
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def anchor(heading: str) -> str:
    text = re.sub(r"[`*_]|\[|\]\([^)]*\)", "", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(document: Path) -> set[str]:
    return {anchor(heading) for heading in HEADING.findall(FENCE.sub("", document.read_text()))}


def relative_links(document: Path) -> list[str]:
    return [target for target in LINK.findall(FENCE.sub("", document.read_text()))
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target)]  # http:, https:, mailto: are not followed


def test_anchors_follow_githubs_rule() -> None:
    assert anchor("Interleaved rounds: `bench run --rounds N`") == "interleaved-rounds-bench-run---rounds-n"
    assert anchor("Kubernetes (kind + KServe)") == "kubernetes-kind--kserve"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_every_relative_link_resolves(document: Path) -> None:
    broken = []
    for target in relative_links(document):
        path_part, _, fragment = target.partition("#")
        linked = (document.parent / path_part).resolve() if path_part else document
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif fragment and linked.suffix == ".md" and fragment not in anchors(linked):
            broken.append(f"{target}: no heading with that anchor")
    assert broken == []
