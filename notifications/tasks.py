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
    """Delete old finished messages for one budget; queue the continuation if rows remain."""
    report = retention_delete()
    if report.more:
        from django.conf import settings
        from django_q.tasks import async_task

        async_task("notifications.tasks.retention", cluster=settings.NOTIFY_DLQ["CLUSTER"],
                   group="retention")
    return report.as_dict()
