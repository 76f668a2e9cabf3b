"""Read-only queries about the queue, for the stats command, the admin, the API's backpressure
and health checks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Min
from django.utils import timezone

from notifications import lookups
from notifications.models import CLAIMABLE, Message, Status


@dataclass(frozen=True)
class LaneStats:
    lane: str
    by_status: dict[str, int]
    due: int
    oldest_due_age: timedelta | None

    @property
    def depth(self) -> int:
        """Messages not finished yet: waiting, retrying or being sent."""
        unfinished = (Status.PENDING, Status.RETRY, Status.PROCESSING)
        return sum(self.by_status.get(s, 0) for s in unfinished)


def queue_stats() -> list[LaneStats]:
    now = timezone.now()
    counts: dict[str, dict[str, int]] = {lane: {} for lane in settings.LANES}
    for row in Message.objects.values("lane", "status").annotate(n=Count("id")).order_by():
        counts.setdefault(row["lane"], {})[row["status"]] = row["n"]
    due_rows = (
        Message.objects.filter(status__in=CLAIMABLE, next_attempt_at__lte=now)
        .values("lane")
        .annotate(n=Count("id"), oldest=Min("next_attempt_at"))
        .order_by()
    )
    due = {row["lane"]: (row["n"], row["oldest"]) for row in due_rows}
    return [
        LaneStats(
            lane=lane,
            by_status=by_status,
            due=due.get(lane, (0, None))[0],
            oldest_due_age=(now - due[lane][1]) if lane in due else None,
        )
        for lane, by_status in counts.items()
    ]


def lane_is_full(lane: str) -> bool:
    """Whether `lane` holds more waiting (pending + retry) messages than its high-water mark.

    Cheap by construction: it counts through the partial index and stops at the mark
    (`LIMIT mark + 1`), and each process reuses the answer for NOTIFY_DEPTH_CACHE_SECONDS. A
    lane with a million rows costs the same as one at the mark.
    """
    conf = settings.NOTIFY_API
    mark = conf["HIGH_WATER"].get(lane)
    if not mark:
        return False

    def over_mark() -> bool:
        waiting = Message.objects.filter(lane=lane, status__in=CLAIMABLE).values("pk")[:mark + 1]
        return waiting.count() > mark

    return lookups.cached("lane_full", (lane, mark), over_mark, ttl=conf["DEPTH_CACHE_SECONDS"])
