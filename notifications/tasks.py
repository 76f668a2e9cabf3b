"""django-q2 task entry points. They take a lane name, call a service, return a summary."""

from __future__ import annotations

from typing import Any

from notifications.delivery import drain_lane as _drain_lane
from notifications.retention import retention_delete
from notifications.sweeper import sweep_lane as _sweep_lane


def drain_lane(lane: str) -> dict[str, Any]:
    return _drain_lane(lane).as_dict()


def sweep_lane(lane: str) -> dict[str, Any]:
    return _sweep_lane(lane).__dict__


def retention() -> dict[str, Any]:
    """Delete old finished messages for one RETENTION_BUDGET_SECONDS; the next tick goes on."""
    return retention_delete().as_dict()
