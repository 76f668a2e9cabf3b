"""Pausing and resuming a lane: the one home of LaneState.paused.

A paused lane's drains claim nothing (they look at the flag each round, through a cache of
PAUSE_CACHE_SECONDS, so a pause takes effect within that plus the sends in flight) and the
sweeper does not wake it. Messages keep arriving and wait, untouched; resuming wakes the lane.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from notifications import lookups
from notifications.audit import audit_record
from notifications.models import AuditAction, LaneState
from notifications.wakeups import wake_lane_on_commit

PAUSE_CACHE_SECONDS = 1.0


def _check(lane: str) -> None:
    if lane not in settings.LANES:
        raise ValueError(f"unknown lane {lane!r}; lanes: {', '.join(settings.LANES)}")


def lane_pause(*, lane: str, user: Any, reason: str = "") -> bool:
    """Pause `lane`. Returns False if it was paused already (nothing changes, nothing audited)."""
    _check(lane)
    with transaction.atomic():
        changed = LaneState.objects.filter(lane=lane, paused=False).update(
            paused=True, paused_at=timezone.now(), pause_reason=reason[:500],
            paused_by=getattr(user, "get_username", lambda: user or "")())
        if changed:
            audit_record(user=user, action=AuditAction.PAUSE, target=f"lane {lane}",
                         reason=reason)
    lookups.invalidate()
    return bool(changed)


def lane_resume(*, lane: str, user: Any, reason: str = "") -> bool:
    """Resume `lane` and wake it. Returns False if it was not paused."""
    _check(lane)
    with transaction.atomic():
        changed = LaneState.objects.filter(lane=lane, paused=True).update(
            paused=False, paused_at=None, paused_by="", pause_reason="",
            resumed_at=timezone.now())
        if changed:
            audit_record(user=user, action=AuditAction.RESUME, target=f"lane {lane}",
                         reason=reason)
            wake_lane_on_commit(lane)
    lookups.invalidate()
    return bool(changed)


def lane_is_paused(lane: str) -> bool:
    """Whether `lane` is paused, as this process saw it at most PAUSE_CACHE_SECONDS ago."""
    return lookups.cached(
        "lane_paused", lane,
        lambda: LaneState.objects.filter(lane=lane, paused=True).exists(),
        ttl=PAUSE_CACHE_SECONDS)
