"""docs/architecture.md states what the code does: the retry window table is recomputed here from
the demo event types and delivery.backoff_seconds, and the doc names no file outside the
repository."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings

from notifications import delivery
from notifications.demo import DEMO
from notifications.models import EventType

DOC = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"
EXPIRY_WORDS = {None: "none", timedelta(hours=1): "1 hour", timedelta(days=1): "1 day",
                timedelta(days=2): "2 days"}


def _waits(max_attempts: int, draw: str, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The backoff after each failed try but the last (the last failure kills the message):
    `draw` "max" makes the full-jitter draw return its upper bound, "mean" its expected value."""
    pick = (lambda low, high: high) if draw == "max" else (lambda low, high: (low + high) / 2)
    monkeypatch.setattr(delivery.random, "uniform", pick)
    return [delivery.backoff_seconds(tries) for tries in range(1, max_attempts)]


def _doc_rows() -> dict[str, list[str]]:
    """The retry window table's rows by event key, as cells."""
    text = DOC.read_text()
    table = text[text.index("| event type | max attempts | expiry | backoff bounds"):]
    rows: dict[str, list[str]] = {}
    for line in table.splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        key = re.match(r"`([^`]+)`", cells[0])
        assert key, line
        rows[key.group(1)] = cells
    return rows


def _seconds(cell: str) -> int:
    found = re.match(r"([\d,]+) s\b", cell)
    assert found, cell
    return int(found.group(1).replace(",", ""))


def test_the_retry_window_table_matches_the_code(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (settings.NOTIFY["RETRY_BASE_SECONDS"], settings.NOTIFY["RETRY_CAP_SECONDS"]) == (
        30.0, 3600.0), "the table is for the default backoff settings"
    default = EventType._meta.get_field("max_attempts").default
    expected = {spec["event"]: (spec["max_attempts"], spec["expiry"]) for spec in DEMO}
    expected["EventType"] = (default, None)
    rows = _doc_rows()
    assert set(rows) == set(expected)
    for key, (max_attempts, expiry) in expected.items():
        cells = rows[key]
        bounds = _waits(max_attempts, "max", monkeypatch)
        means = _waits(max_attempts, "mean", monkeypatch)
        assert int(cells[1]) == max_attempts, key
        assert cells[2].startswith(EXPIRY_WORDS[expiry]), key
        assert cells[3] == ", ".join(f"{b:,.0f}" for b in bounds), key
        assert _seconds(cells[4]) == round(sum(means)), key
        assert _seconds(cells[5]) == round(sum(bounds)), key
        if expiry is not None:  # the column says no expiry cuts the window short
            assert sum(bounds) < expiry.total_seconds(), key


def test_the_doc_names_no_file_outside_the_repository() -> None:
    text = DOC.read_text()
    assert "/work/" not in text
    assert "../shared" not in text and "shared/ARCHITECTURE" not in text
    assert "measured before this change" not in text
