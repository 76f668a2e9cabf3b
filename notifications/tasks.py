"""django-q2 task entry points. They take a lane name, call a service, return a summary."""

from __future__ import annotations

from typing import Any

from notifications.delivery import drain_lane as _drain_lane
from notifications.sweeper import sweep_lane as _sweep_lane


def drain_lane(lane: str) -> dict[str, Any]:
    return _drain_lane(lane).as_dict()


def sweep_lane(lane: str) -> dict[str, Any]:
    return _sweep_lane(lane).__dict__
