"""Health endpoints: JSON, no auth, no secrets.

/health/        the process answers and the database does.
/health/ready/  also: each lane's cluster ran a task recently (heartbeat) and no lane is past its
                high-water mark. A load balancer sends traffic only where this says 200.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_GET


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except DatabaseError:
        return False


@require_GET
def health(request: HttpRequest) -> JsonResponse:
    ok = _database_ok()
    return JsonResponse({"status": "ok" if ok else "unavailable",
                         "checks": {"database": "ok" if ok else "unavailable"}},
                        status=200 if ok else 503)


@require_GET
def ready(request: HttpRequest) -> JsonResponse:
    if not _database_ok():
        return JsonResponse({"status": "not_ready", "checks": {"database": "unavailable"}},
                            status=503)
    from notifications.models import LaneState
    from notifications.selectors import lane_is_full

    now = timezone.now()
    max_age = timedelta(minutes=settings.NOTIFY["SWEEP_MINUTES"] * 3)
    beats = dict(LaneState.objects.values_list("lane", "heartbeat_at"))
    lanes: dict[str, Any] = {}
    for lane in settings.LANES:
        beat = beats.get(lane)
        alive = beat is not None and now - beat <= max_age
        full = lane_is_full(lane)
        lanes[lane] = {
            "cluster": "ok" if alive else "no recent heartbeat",
            "heartbeat_age_seconds": round((now - beat).total_seconds(), 1) if beat else None,
            "backlog": "over high-water mark" if full else "ok",
        }
    is_ready = all(v["cluster"] == "ok" and v["backlog"] == "ok" for v in lanes.values())
    return JsonResponse(
        {"status": "ready" if is_ready else "not_ready",
         "checks": {"database": "ok", "lanes": lanes}},
        status=200 if is_ready else 503,
    )
