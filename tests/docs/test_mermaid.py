"""Every Mermaid block in the docs parses, so the diagrams a reader opens are drawn, not an error.

The rendering tests need mermaid-cli (tools/mermaid: `PUPPETEER_SKIP_DOWNLOAD=1 npm ci`) and
Debian's Chromium. Without them they skip, unless MERMAID_TESTS_REQUIRED is set: .ci/run installs
both and sets it, so in CI a missing renderer fails. The extraction and the portability check
need neither and always run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.docs.mermaid import (
    CHROMIUM,
    ROOT,
    Block,
    mermaid_blocks,
    mmdc_path,
    portability_errors,
    render_errors,
)

REQUIRED_ENV = "MERMAID_TESTS_REQUIRED"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _mmdc_or_skip() -> Path:
    mmdc = mmdc_path()
    missing = []
    if mmdc is None:
        missing.append("mmdc (cd tools/mermaid && PUPPETEER_SKIP_DOWNLOAD=1 npm ci)")
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    if missing:
        message = " and ".join(missing) + " missing"
        if os.environ.get(REQUIRED_ENV):
            pytest.fail(f"{message}, and {REQUIRED_ENV} is set (CI installs them).")
        pytest.skip(f"{message}; .ci/run installs them and runs these tests.")
    assert mmdc is not None
    return mmdc


def _all_blocks() -> list[Block]:
    return [block for path in DOCS for block in mermaid_blocks(path)]


def test_it_finds_every_block_of_the_architecture_doc() -> None:
    doc = ROOT / "docs" / "architecture.md"
    fences = [n for n, line in enumerate(doc.read_text().splitlines(), start=1)
              if line.strip() == "```mermaid"]
    blocks = mermaid_blocks(doc)
    assert len(fences) >= 10
    assert [b.line for b in blocks] == fences
    assert blocks[0].text.splitlines()[0] == "flowchart LR"


def test_no_state_diagram_label_has_a_second_colon() -> None:
    assert portability_errors(_all_blocks()) == []


def test_the_portability_check_reports_a_second_colon(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("# t\n\n```mermaid\nstateDiagram-v2\n    [*] --> a: start\n"
                   "    a --> b: webhook: delivered\n```\n")
    errors = portability_errors(mermaid_blocks(doc))
    assert len(errors) == 1
    assert errors[0].startswith(f"{doc}:6: a second colon")


def test_every_mermaid_block_in_the_docs_renders() -> None:
    mmdc = _mmdc_or_skip()
    blocks = _all_blocks()
    assert blocks
    errors = render_errors(blocks, mmdc=mmdc)
    assert not errors, "\n\n".join(errors)


def test_a_broken_block_is_reported_with_its_line(tmp_path: Path) -> None:
    mmdc = _mmdc_or_skip()
    doc = tmp_path / "doc.md"
    doc.write_text(
        "# Broken on purpose\n"                      # 1
        "\n"                                          # 2
        "```mermaid\n"                                # 3
        "flowchart LR\n"                              # 4
        "    a --> b\n"                               # 5
        "```\n"                                       # 6
        "\n"                                          # 7
        "```mermaid\n"                                # 8
        "sequenceDiagram\n"                           # 9
        "    participant A\n"                         # 10
        "    A->>A: one; two\n"                       # 11: a semicolon ends the statement
        "```\n"                                       # 12
        "\n"                                          # 13
        "```mermaid\n"                                # 14
        "flowchart LR\n"                              # 15
        "    c --> d\n"                               # 16
        "```\n"                                       # 17
        "```mermaid\n"                                # 18
        "flowchart LR\n"                              # 19
        "    e[unclosed --> f\n"                      # 20
        "```\n"                                       # 21
    )
    errors = render_errors(mermaid_blocks(doc), mmdc=mmdc)
    assert len(errors) == 2, errors
    assert errors[0].startswith(f"{doc}:11 (block at line 8): "), errors[0]
    assert "Parse error" in errors[0]
    assert errors[1].startswith(f"{doc}:20 (block at line 18): "), errors[1]
