"""The per-lane, per-minute, per-provider rollup of what the drains recorded (LaneMinute): the
dashboard's chart, failure rate and DLQ growth read it (summed over the providers), so a refresh
never counts the Message table, and the reputation guard's volume per provider comes from it, so
the guard never counts the attempts.

Written by the drain in the transaction that records a chunk of outcomes, as its last statement:
one INSERT ... ON CONFLICT DO UPDATE per provider in the chunk (usually one) that adds the
chunk's counts to the minute's row (the same SQL on PostgreSQL and SQLite). Last, because the
upsert locks the minute's row until commit and every drain of the lane writes that row: taken
last, the lock is held only for the commit, so drains of one lane do not queue behind each other
while they record. A chunk with several providers writes them in name order, as every drain
does, so two drains never wait for each other's rows in opposite orders.

On PostgreSQL a chunk whose every email was sent through one provider is recorded in one
statement (transitions.mark_sent_recorded), whose last part is this upsert (`add_sent_sql`).

Plain SQL: it runs once per recorded chunk, on the delivery path, and the ORM has no upsert
that adds to the existing values.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from functools import cache
from typing import Any

from django.db import connection

from notifications import totals
from notifications.models import LaneMinute


def minute_of(moment: datetime) -> datetime:
    """The start of the minute `moment` falls in (the rollup's key)."""
    return moment.replace(second=0, microsecond=0)


_COUNTS = ("sent", "failed", "dead", "suppressed")


@cache
def _upsert_sql() -> str:
    q = connection.ops.quote_name
    table = q(LaneMinute._meta.db_table)
    adds = ", ".join(f"{q(c)} = {table}.{q(c)} + excluded.{q(c)}"
                     for c in _COUNTS)
    key = f"{q('lane')}, {q('minute')}, {q('provider')}"  # one_row_per_lane_minute_provider
    return (
        f"INSERT INTO {table} ({key}, {', '.join(q(c) for c in _COUNTS)}) "
        f"VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT ({key}) DO UPDATE SET {adds}"
    )


def add_sent_sql(sent: str, condition: str) -> str:
    """PostgreSQL: rollup_add of `sent` messages only, as part of a larger statement: `sent`
    is an SQL expression, and nothing is written unless it is above 0 and `condition` holds.
    Parameters: lane, minute (minute_param), provider."""
    q = connection.ops.quote_name
    table = q(LaneMinute._meta.db_table)
    key = f"{q('lane')}, {q('minute')}, {q('provider')}"
    return (
        f"INSERT INTO {table} ({key}, {', '.join(q(c) for c in _COUNTS)}) "
        f"SELECT %s, %s::timestamptz, %s, {sent}, 0, 0, 0 WHERE {sent} > 0 AND {condition} "
        f"ON CONFLICT ({key}) DO UPDATE SET "
        f"{q('sent')} = {table}.{q('sent')} + excluded.{q('sent')}"
    )


def minute_param(at: datetime) -> Any:
    """The rollup key's minute of `at`, as the database driver takes it."""
    return connection.ops.adapt_datetimefield_value(minute_of(at))


def rollup_add(*, lane: str, at: datetime, provider: str = "", sent: int = 0, failed: int = 0,
               dead: int = 0, suppressed: int = 0) -> None:
    """Add counts to the row of `lane` and `provider` ("" for outcomes that went to none) for
    the minute of `at` (created if missing). Nothing to add, nothing written."""
    if not (sent or failed or dead or suppressed):
        return
    minute = minute_param(at)
    with connection.cursor() as cursor:
        cursor.execute(_upsert_sql(), [lane, minute, provider, sent, failed, dead, suppressed])


def record_counts(*, at: datetime, totals_counts: Mapping[totals.Key, int],
                  minutes: Mapping[tuple[str, str], Mapping[str, int]]) -> None:
    """How every recorder (the drain, the sweeper, the suppression check) adds its counts: the
    /metrics totals (`totals.add`), then the minute's rollup row of each (lane, provider) in
    sorted order, with `minutes[(lane, provider)]` giving its sent/failed/dead/suppressed.

    These are hot rows every drain of a lane writes; each writer takes their locks in this one
    order, last in its transaction, so they are held only for the commit and two writers never
    deadlock on them."""
    totals.add(totals_counts)
    for (lane, provider), counts in sorted(minutes.items()):
        rollup_add(lane=lane, at=at, provider=provider, **counts)
