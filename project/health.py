"""Health endpoints: JSON, no auth, no secrets.

/health/        the process answers and the database does.
/health/ready/  whether this node can serve: the database answers, and the settings are loaded.
                It also reports each lane's cluster heartbeat and backlog, but neither makes it
                503: a deep bulk lane or a busy cluster must not take web nodes out of a load
                balancer (that would refuse password resets too, defeating "bulk sheds first";
                the API already answers 429 for a full lane), and with no cluster running the
                node still accepts events, which wait durably in the queue. Backlog and
                heartbeats belong to stats, metrics and alerts.
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
    return JsonResponse({"status": "ready", "checks": {"database": "ok", "lanes": lanes}},
                        status=200)
