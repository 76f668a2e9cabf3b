"""Each lane's qcluster runs at its own CPU priority (bulk yields to transactional)."""

from __future__ import annotations

from typing import Any

import pytest

from notifications import priority
from notifications.priority import apply_lane_priority


@pytest.fixture
def niced(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    monkeypatch.setattr(priority.os, "nice", lambda n: calls.append(n) or n)
    return calls


def test_the_bulk_lanes_cluster_yields_the_cpu(niced: list[int]) -> None:
    assert apply_lane_priority(["manage.py", "qcluster"], {"Q_CLUSTER_NAME": "bulk"}) == 10
    assert niced == [10]


def test_the_transactional_lane_and_other_commands_keep_their_priority(niced: list[int]) -> None:
    assert apply_lane_priority(["manage.py", "qcluster"], {"Q_CLUSTER_NAME": "transactional"}) == 0
    assert apply_lane_priority(["manage.py", "runserver"], {"Q_CLUSTER_NAME": "bulk"}) == 0
    assert niced == []


def test_a_priority_it_may_not_take_is_logged_not_fatal(
    monkeypatch: pytest.MonkeyPatch, settings: Any, caplog: pytest.LogCaptureFixture,
) -> None:
    settings.NOTIFY = {**settings.NOTIFY, "LANE_NICE": {"transactional": -5, "bulk": 10}}

    def refuse(n: int) -> int:
        raise PermissionError("not permitted")

    monkeypatch.setattr(priority.os, "nice", refuse)

    assert apply_lane_priority(["manage.py", "qcluster"], {"Q_CLUSTER_NAME": "transactional"}) == 0
    assert "needs privileges" in caplog.text
