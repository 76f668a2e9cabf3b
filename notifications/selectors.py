"""Read-only queries about the queue, for the stats command, the admin (the dashboard and the
changelists), the API's backpressure and health checks.

The console's queries stay cheap with millions of rows: what is unfinished (pending, retry,
processing) and the DLQ are counted exactly through indexes that skip the sent history; sent and
cancelled are counted up to ESTIMATE_ABOVE and estimated above it (PostgreSQL's planner); the
per-minute figures come from the drains' rollup (LaneMinute, notifications/rollup.py).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connections
from django.db.models import Count, Min, Q, QuerySet, Sum
from django.utils import timezone

from notifications import lookups
from notifications.models import CLAIMABLE, LaneMinute, LaneState, Message, Producer, Status
from notifications.rollup import minute_of


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
        waiting = Message.objects.filter(lane=lane, status__in=CLAIMABLE)
        return capped_count(waiting, mark) is None

    return lookups.cached("lane_full", (lane, mark), over_mark, ttl=conf["DEPTH_CACHE_SECONDS"])


# --- counting without counting the table ----------------------------------------------------------

# Above this many rows a count is an estimate: counting exactly would read them all.
ESTIMATE_ABOVE = 10_000


@dataclass(frozen=True)
class Tally:
    """A row count: exact, or (exact=False) PostgreSQL's estimate, or at least `value` where the
    database cannot estimate (SQLite)."""

    value: int
    exact: bool = True

    def __str__(self) -> str:
        if self.exact:
            return f"{self.value:,}"
        return f"≈{self.value:,}" if self.value > ESTIMATE_ABOVE else f"{self.value:,}+"

    def as_json(self) -> dict[str, Any]:
        return {"value": self.value, "exact": self.exact, "text": str(self)}


def capped_count(queryset: QuerySet[Any], cap: int) -> int | None:
    """How many rows `queryset` has if at most `cap`, else None; reads at most cap + 1 rows."""
    n = queryset.order_by().values("pk")[:cap + 1].count()
    return n if n <= cap else None


def estimated_count(queryset: QuerySet[Any]) -> int | None:
    """The planner's estimate of `queryset`'s rows (PostgreSQL), without running it; None
    elsewhere."""
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        return None
    sql, params = queryset.order_by().values("pk").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return int(plan[0]["Plan"]["Plan Rows"])


def table_estimate(model: type[Any], using: str = "default") -> int | None:
    """The whole table's row count as PostgreSQL last measured it (pg_class.reltuples, kept by
    autovacuum and ANALYZE); None elsewhere or when never measured."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                       [connection.ops.quote_name(model._meta.db_table)])
        row = cursor.fetchone()
    return int(row[0]) if row and row[0] is not None and row[0] >= 0 else None


def tally(queryset: QuerySet[Any], cap: int = ESTIMATE_ABOVE) -> Tally:
    """Exact up to `cap` rows, the planner's estimate above (never below cap + 1)."""
    n = capped_count(queryset, cap)
    if n is not None:
        return Tally(n)
    return Tally(max(cap + 1, estimated_count(queryset) or 0), exact=False)


# --- the dashboard --------------------------------------------------------------------------------

# Counted exactly, per lane: the unfinished messages and the DLQ (indexes skip the sent history).
EXACT_STATUSES = (Status.PENDING, Status.RETRY, Status.PROCESSING, Status.DEAD)
# The history: counted up to ESTIMATE_ABOVE, estimated above.
HISTORY_STATUSES = (Status.SENT, Status.DELIVERED, Status.BOUNCED, Status.COMPLAINED,
                    Status.SUPPRESSED, Status.CANCELLED)
CHART_MINUTES = 60


@dataclass(frozen=True)
class MinuteCounts:
    minute: datetime
    sent: int = 0
    failed: int = 0
    dead: int = 0


@dataclass(frozen=True)
class LaneDashboard:
    lane: str
    by_status: dict[str, Tally]
    due: int
    oldest_due_age: timedelta | None
    minutes: list[MinuteCounts]  # the last CHART_MINUTES minutes, oldest first, zeros filled in
    dead_last_day: int
    paused: bool
    paused_at: datetime | None
    paused_by: str
    pause_reason: str

    @property
    def depth(self) -> int:
        return sum(self.by_status[s].value for s in (Status.PENDING, Status.RETRY,
                                                     Status.PROCESSING))

    @property
    def sent_last_hour(self) -> int:
        return sum(m.sent for m in self.minutes)

    @property
    def failed_last_hour(self) -> int:
        return sum(m.failed for m in self.minutes)

    @property
    def dead_last_hour(self) -> int:
        return sum(m.dead for m in self.minutes)

    @property
    def failure_rate(self) -> float | None:
        """Of the tries recorded in the last hour, the share that failed (retried or dead)."""
        failed = self.failed_last_hour + self.dead_last_hour
        tries = self.sent_last_hour + failed
        return failed / tries if tries else None


def exact_counts() -> dict[str, dict[str, int]]:
    """Per lane, the messages in each of EXACT_STATUSES (through the partial indexes that skip
    the sent history): every configured lane, with the statuses it has none of missing."""
    exact: dict[str, dict[str, int]] = {lane: {} for lane in settings.LANES}
    rows = (Message.objects.filter(status__in=EXACT_STATUSES).values("lane", "status")
            .annotate(n=Count("pk")).order_by())
    for row in rows:
        exact.setdefault(row["lane"], {})[row["status"]] = row["n"]
    return exact


def due_by_lane(now: datetime) -> dict[str, tuple[int, datetime]]:
    """Per lane with messages due at `now`: how many, and when the oldest became due."""
    due_rows = (
        Message.objects.filter(status__in=CLAIMABLE, next_attempt_at__lte=now)
        .values("lane").annotate(n=Count("pk"), oldest=Min("next_attempt_at")).order_by()
    )
    return {row["lane"]: (row["n"], row["oldest"]) for row in due_rows}


def lanes_dashboard(*, now: datetime | None = None) -> list[LaneDashboard]:
    """Every lane's figures for the dashboard, in a fixed number of cheap queries."""
    now = now or timezone.now()
    lanes = list(settings.LANES)
    exact = exact_counts()
    due = due_by_lane(now)
    first_minute = minute_of(now) - timedelta(minutes=CHART_MINUTES - 1)
    # A lane's minute is the sum of its providers' rows.
    rolled = {(r["lane"], r["minute"]): MinuteCounts(r["minute"], r["s"], r["f"], r["d"])
              for r in LaneMinute.objects.filter(minute__gte=first_minute)
              .values("lane", "minute")
              .annotate(s=Sum("sent"), f=Sum("failed"), d=Sum("dead")).order_by()}
    dead_day = dict(
        LaneMinute.objects.filter(minute__gt=now - timedelta(days=1)).values("lane")
        .annotate(n=Sum("dead")).order_by().values_list("lane", "n"))
    states = {s.lane: s for s in LaneState.objects.all()}
    result = []
    for lane in lanes:
        by_status: dict[str, Tally] = {s: Tally(exact[lane].get(s, 0)) for s in EXACT_STATUSES}
        for status in HISTORY_STATUSES:
            by_status[status] = tally(Message.objects.filter(lane=lane, status=status))
        minutes = []
        for i in range(CHART_MINUTES):
            minute = first_minute + timedelta(minutes=i)
            minutes.append(rolled.get((lane, minute)) or MinuteCounts(minute))
        state = states.get(lane)
        n_due, oldest = due.get(lane, (0, None))
        result.append(LaneDashboard(
            lane=lane, by_status=by_status, due=n_due,
            oldest_due_age=(now - oldest) if oldest else None, minutes=minutes,
            dead_last_day=dead_day.get(lane) or 0,
            paused=bool(state and state.paused), paused_at=state.paused_at if state else None,
            paused_by=state.paused_by if state else "",
            pause_reason=state.pause_reason if state else "",
        ))
    return result


def heartbeats() -> dict[str, datetime | None]:
    """When each lane's cluster last ran a drain or a sweep."""
    return dict(LaneState.objects.values_list("lane", "heartbeat_at"))


# --- searching messages ---------------------------------------------------------------------------

# notifications.delivery.message_id_for: <n{pk}.{12 hex digits}@{domain}>
_MESSAGE_ID = re.compile(r"<?n(\d{1,18})\.[0-9a-f]{12}@[^<>\s]+>?")


def parse_message_id(text: str) -> int | None:
    """The message id in a Message-ID header we wrote, or None if `text` is not one."""
    match = _MESSAGE_ID.fullmatch(text.strip())
    return int(match.group(1)) if match else None


def message_search(queryset: QuerySet[Message], term: str) -> QuerySet[Message]:
    """Messages matching an operator's search: an id, a Message-ID as the email carries it
    (`<n123.abc@domain>`, with or without the brackets), an idempotency key, or a recipient
    address (exact when it holds an @, else the start of one).

    Each form is matched exactly on what it can be, through an index (the primary key,
    message_to_email_idx, and the per-producer idempotency key index, asked once per producer:
    there are few), so a search never scans the table.
    """
    term = term.strip()
    if not term:
        return queryset
    pk = parse_message_id(term)
    if pk is not None:
        return queryset.filter(pk=pk)
    producers = list(Producer.objects.values_list("pk", flat=True))
    match = Q(producer_id__in=producers, idempotency_key=term)
    if term.isdigit() and len(term) < 19:
        match |= Q(pk=int(term))
    if "@" in term:
        match |= Q(to_email__in={term, term.lower()})
    else:
        match |= Q(to_email__startswith=term)
    return queryset.filter(match)
