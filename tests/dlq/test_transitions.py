from __future__ import annotations

from pathlib import Path

from notifications.transitions import TRANSITIONS, mermaid_diagram


def test_discard_goes_from_dead_to_cancelled() -> None:
    discard = TRANSITIONS["discard"]
    assert ([s.value for s in discard.sources], discard.target.value) == (["dead"], "cancelled")


def test_the_architecture_doc_shows_the_generated_lifecycle() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "architecture.md").read_text()
    assert mermaid_diagram() in doc


def test_no_generated_label_has_a_second_colon_or_a_semicolon() -> None:
    # Older Mermaid renderers reject `a --> b: text: more`, and a semicolon ends a statement in
    # several Mermaid grammars: either would break the doc's diagram outside Mermaid 11.
    edges = [line for line in mermaid_diagram().splitlines()[1:] if ":" in line]
    assert len(edges) > len(TRANSITIONS)
    for line in edges:
        assert line.count(":") == 1 and ";" not in line, line
