"""Periodic jobs, created idempotently after every migrate.

Only the lane clusters run in production, and a Schedule with no `cluster` fires only on a cluster
named like Q_CLUSTER["name"], so each lane gets its own sweeper Schedule with an explicit cluster.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings


def ensure_schedules(**kwargs: Any) -> None:
    from django_q.models import Schedule

    from notifications.models import LaneState

    for lane in settings.LANES:
        LaneState.objects.get_or_create(lane=lane)
        Schedule.objects.update_or_create(
            name=f"sweep-{lane}",
            defaults={
                "func": "notifications.tasks.sweep_lane",
                "args": repr(lane),
                "schedule_type": Schedule.MINUTES,
                "minutes": settings.NOTIFY["SWEEP_MINUTES"],
                "repeats": -1,
                "cluster": lane,
            },
        )
    # Housekeeping on the cluster that runs the DLQ's jobs (the bulk lane's by default: niced,
    # so it yields the CPU to transactional mail).
    Schedule.objects.update_or_create(
        name="retention",
        defaults={
            "func": "notifications.tasks.retention",
            "schedule_type": Schedule.MINUTES,
            "minutes": settings.NOTIFY["RETENTION_MINUTES"],
            "repeats": -1,
            "cluster": settings.NOTIFY_DLQ["CLUSTER"],
        },
    )
