"""The sweeper: what makes a lost wake-up or a dead worker cost latency, never a message.

Runs every NOTIFY_SWEEP_MINUTES on each lane's cluster:

1. Rows left `processing` past their lease (the worker crashed or was killed mid-batch) go back
   to `retry`, due now, or to `dead` if that was their last attempt. The email may have gone out
   before the crash, so the attempt is recorded as lease_expired and stays counted.
2. If the lane has due rows, a drain is enqueued even if the wake flag says one is pending: the
   pending task may be the one that was lost.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from notifications import events, totals, transitions
from notifications.lanes import lane_is_paused
from notifications.models import CLAIMABLE, DeadReason, Message, Outcome, Status
from notifications.rollup import record_counts
from notifications.wakeups import heartbeat, wake_lane


@dataclass
class SweepReport:
    lane: str
    requeued: int = 0
    dead: int = 0
    woke: bool = False


def sweep_lane(lane: str, *, limit: int = 1000) -> SweepReport:
    report = SweepReport(lane=lane)
    heartbeat(lane)
    now = timezone.now()
    expired = list(
        Message.objects.filter(lane=lane, status=Status.PROCESSING, lease_until__lt=now)
        .only("id", "attempts", "max_attempts", "lease_token")[:limit]
    )
    counts: Counter[totals.Key] = Counter()
    for message in expired:
        moved_to = transitions.lease_expired(message, now=now)
        report.dead += moved_to == Status.DEAD
        report.requeued += moved_to == Status.RETRY
        if moved_to is not None:
            events.emit("message.lease_expired", message_id=message.pk, lane=lane, provider="",
                        outcome=str(Outcome.LEASE_EXPIRED), attempt=message.attempts,
                        status=str(moved_to))
            counts[(lane, "", "failed", Outcome.LEASE_EXPIRED)] += 1
            if moved_to == Status.DEAD:
                counts[(lane, "", "dead", DeadReason.MAX_ATTEMPTS)] += 1
            else:
                counts[(lane, "", "retried", "")] += 1
    # The dashboard's DLQ growth and /metrics count these too (the drain never saw them).
    with transaction.atomic():
        record_counts(at=now, totals_counts=counts, minutes={(lane, ""): {"dead": report.dead}})
    if lane_is_paused(lane):
        return report  # lane_resume wakes it
    if Message.objects.filter(lane=lane, status__in=CLAIMABLE, next_attempt_at__lte=now).exists():
        report.woke = wake_lane(lane, force=True)
    return report
