"""The design document ships with the project, and every pointer into it names a section it has."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DESIGN = REPO / "docs" / "design.md"
SOURCES = [
    p
    for pattern in ("*.py", "*.md", "*.yaml", "*.slurm")
    for p in REPO.rglob(pattern)
    if not {".git", ".venv", "runs", "build"} & set(p.relative_to(REPO).parts)
]


def _headings() -> set[str]:
    return {m.group(1).strip() for m in re.finditer(r"^#{1,4} (.+)$", DESIGN.read_text(), re.MULTILINE)}


def test_design_document_is_in_the_repository():
    headings = _headings()
    for section in ("Records", "The sandbox", "Interfaces", "A fault of the host is never a verdict"):
        assert section in headings


def test_no_pointer_to_a_document_outside_the_repository():
    offenders = [
        str(p.relative_to(REPO)) for p in SOURCES if re.search(r"\b(DESIGN|STYLE)\.md\b", p.read_text())
    ]
    assert not offenders, f"these files point to a document the project does not ship: {offenders}"


def test_every_quoted_section_exists():
    headings = _headings()
    cited = []
    for path in SOURCES:
        text = " ".join(path.read_text().split())  # a citation may wrap across lines
        for match in re.finditer(r'docs/design\.md,? "([^"]+)"', text):
            cited.append((path.relative_to(REPO), match.group(1)))
    assert cited, "no file cites a section of docs/design.md"
    missing = [(str(p), section) for p, section in cited if section not in headings]
    assert not missing, f"cited sections that docs/design.md does not have: {missing}"
