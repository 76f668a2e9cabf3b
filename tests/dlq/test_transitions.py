from __future__ import annotations

from pathlib import Path

from notifications.transitions import TRANSITIONS, mermaid_diagram


def test_discard_goes_from_dead_to_cancelled() -> None:
    discard = TRANSITIONS["discard"]
    assert ([s.value for s in discard.sources], discard.target.value) == (["dead"], "cancelled")


def test_the_architecture_doc_shows_the_generated_lifecycle() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "architecture.md").read_text()
    assert mermaid_diagram() in doc
