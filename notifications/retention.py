"""Retention: finished messages older than NOTIFY_RETENTION_DAYS are deleted, a batch at a time.

Finished = sent, delivered, bounced, complained, cancelled or suppressed, and not changed for
RETENTION_DAYS (`updated_at`, so a late bounce keeps its message for another period). Tracking
events that never matched a message go too, RETENTION_DAYS after they came. Dead
letters are kept until an operator handles them (a discard makes them cancelled; then they age
out like the rest). Their DeliveryAttempt and TrackingEvent rows go with them; a Suppression
that names the message keeps its row and forgets the message. The counters of /metrics live in
MetricTotal and the dashboard's history in LaneMinute, so neither changes.

How it stays out of the drains' way:
- a batch is one short transaction over at most RETENTION_BATCH messages found by a primary-key
  range scan (no new index: ids grow with created_at, so the oldest rows are the lowest ids, and
  a binary search over the primary key finds the last id created before the cutoff first);
- on PostgreSQL the batch's rows are taken FOR UPDATE SKIP LOCKED, so a row a webhook is updating
  is skipped this time, never waited for; drains only touch unfinished rows, never these;
- the scheduled task (every RETENTION_MINUTES, 1) works for at most RETENTION_BUDGET_SECONDS
  (2) and never sleeps: it runs in a worker of the bulk cluster, which would otherwise drain
  the bulk lane, so it takes that worker for seconds a minute, not for a long paced run, and the
  next tick goes on where this one stopped (no continuation chains to pile up). 2 s a minute
  deletes ~17,000-34,000 messages at the measured 9,000-17,000 a second: 25-50 million a day;
- `manage.py retention` runs until nothing is left, in a process of its own, optionally at a
  duty cycle (--duty 0.1: after a batch that took t seconds it sleeps t * (1 / duty - 1), so it
  backs off by itself when the database is busy).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max, Min
from django.utils import timezone

from notifications import events
from notifications.models import DeliveryAttempt, Message, Status, Suppression, TrackingEvent

logger = logging.getLogger(__name__)

FINISHED = (Status.SENT, Status.DELIVERED, Status.BOUNCED, Status.COMPLAINED, Status.CANCELLED,
            Status.SUPPRESSED)


@dataclass
class RetentionReport:
    cutoff: datetime | None
    messages: int = 0
    attempts: int = 0
    tracking_events: int = 0
    batches: int = 0
    more: bool = False  # stopped at the budget with rows left
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {"cutoff": self.cutoff.isoformat() if self.cutoff else None,
                "messages": self.messages, "attempts": self.attempts,
                "tracking_events": self.tracking_events, "batches": self.batches,
                "more": self.more, "seconds": round(self.seconds, 2)}


def last_id_before(cutoff: datetime) -> int | None:
    """The highest message id created before `cutoff` (None: none is), by a binary search over
    the primary key: ~log2(rows) index lookups, no scan and no index on created_at."""
    bounds = Message.objects.aggregate(lo=Min("pk"), hi=Max("pk"))
    lo, hi = bounds["lo"], bounds["hi"]
    if lo is None or not _created_before(lo, cutoff):
        return None
    while lo < hi:
        mid = (lo + hi + 1) // 2
        row = Message.objects.filter(pk__gte=mid).order_by("pk").values_list(
            "pk", "created_at").first()
        if row is not None and row[1] < cutoff:
            lo = row[0]  # >= mid: ids need not be dense
        else:
            hi = mid - 1
    # Ids follow created_at only roughly (concurrent inserts): the bound is a scan limit, and
    # the batches check each row's own age, so an off-by-a-few bound only defers a few rows.
    return lo


def _created_before(pk: int, cutoff: datetime) -> bool:
    created = Message.objects.filter(pk=pk).values_list("created_at", flat=True).first()
    return created is not None and created < cutoff


def retention_delete(*, now: datetime | None = None, days: int | None = None,
                     batch: int | None = None, budget: float | None = None,
                     duty: float | None = None) -> RetentionReport:
    """Delete finished messages older than `days` (RETENTION_DAYS), in batches, for at most
    `budget` seconds; see the module docstring."""
    conf = settings.NOTIFY
    days = conf["RETENTION_DAYS"] if days is None else days
    batch = conf["RETENTION_BATCH"] if batch is None else batch
    budget = conf["RETENTION_BUDGET_SECONDS"] if budget is None else budget
    duty = 1.0 if duty is None else duty
    started = time.monotonic()
    if days <= 0:
        return RetentionReport(cutoff=None)  # keep everything
    cutoff = (now or timezone.now()) - timedelta(days=days)
    report = RetentionReport(cutoff=cutoff)
    bound = last_id_before(cutoff)
    after = 0
    while bound is not None:
        batch_started = time.monotonic()
        with transaction.atomic():
            ids = _take(after, bound, cutoff, batch)
            if ids:
                attempts, tracking = _delete_children(ids)
                report.attempts += attempts
                report.tracking_events += tracking
                report.messages += _delete(ids, cutoff)
        if not ids:
            break
        report.batches += 1
        after = ids[-1]
        if time.monotonic() - started >= budget:
            report.more = True
            break
        if duty < 1:  # never past the budget
            pause = (time.monotonic() - batch_started) * (1 / duty - 1)
            time.sleep(max(0.0, min(pause, budget - (time.monotonic() - started))))
    if not report.more:
        report.tracking_events += _delete_unmatched_events(cutoff, batch, started, budget, report)
    report.seconds = time.monotonic() - started
    if report.messages or report.tracking_events:
        events.emit("retention.deleted", **report.as_dict())
    return report


def _delete_unmatched_events(cutoff: datetime, batch: int, started: float, budget: float,
                             report: RetentionReport) -> int:
    """Tracking events that never matched a message (kept for catch-up, then given up), older
    than the cutoff: through the received_at index, a batch at a time, within the budget."""
    deleted = 0
    while True:
        ids = list(TrackingEvent.objects.filter(message__isnull=True, received_at__lt=cutoff)
                   .order_by("received_at").values_list("pk", flat=True)[:batch])
        if not ids:
            return deleted
        deleted += TrackingEvent.objects.filter(pk__in=ids).delete()[0]
        if time.monotonic() - started >= budget:
            report.more = True
            return deleted


def _take(after: int, bound: int, cutoff: datetime, batch: int) -> list[int]:
    rows = (Message.objects.filter(pk__gt=after, pk__lte=bound, status__in=FINISHED,
                                   updated_at__lt=cutoff).order_by("pk"))
    if connection.features.has_select_for_update_skip_locked:
        rows = rows.select_for_update(skip_locked=True, of=("self",))
    return list(rows.values_list("pk", flat=True)[:batch])


def _delete_children(ids: list[int]) -> tuple[int, int]:
    # Plain DELETEs (no signals, no cascades below these), each through the FK's index.
    attempts = DeliveryAttempt.objects.filter(message_id__in=ids).delete()[0]
    tracking = TrackingEvent.objects.filter(message_id__in=ids).delete()[0]
    Suppression.objects.filter(message_id__in=ids).update(message=None)
    return attempts, tracking


def _delete(ids: list[int], cutoff: datetime) -> int:
    """The messages themselves, checked again (status and age) in the same statement."""
    q = connection.ops.quote_name
    table = q(Message._meta.db_table)
    marks = ", ".join(["%s"] * len(ids))
    statuses = ", ".join(["%s"] * len(FINISHED))
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {table} WHERE {q('id')} IN ({marks}) AND {q('status')} IN "
            f"({statuses}) AND {q('updated_at')} < %s",
            [*ids, *(s.value for s in FINISHED), connection.ops.adapt_datetimefield_value(cutoff)])
        return cursor.rowcount
