"""Cumulative counters for /metrics (MetricTotal rows), written where the counted thing happens.

Prometheus wants counters that only go up, right whichever web process it scrapes. Process-local
prometheus_client counters would be neither: the sends happen in qcluster workers on any host,
and a scrape reaches one web process. Counting the Message and DeliveryAttempt tables per scrape
would be right but slow at millions of rows, and wrong once retention deletes old rows. So the
drain adds its chunk's counts to a few MetricTotal rows in the transaction that records the
chunk (one multi-row INSERT ... ON CONFLICT DO UPDATE, the same SQL on PostgreSQL and SQLite),
and a scrape reads those few dozen rows.

Rows are keyed (lane, provider, name, label):
    sent        ""              messages the provider accepted
    failed      <outcome>       tries that did not send (transient, unknown, permanent, expired,
                                lease_expired)
    retried     ""              messages scheduled for another try
    dead        <dead reason>   messages moved to the DLQ
    suppressed  <reason>        messages stopped by the suppression list
    send_ms     <le> | "sum"    histogram of one send's duration: a count per bucket (not
                                cumulative; the collector adds them up) and the sum in ms
    queue_ms    <le> | "sum"    histogram of the time from enqueue to sent, in ms

The rows a statement writes are sorted by key, so two drains that write the same rows lock them
in the same order and never deadlock. Recorders call it through rollup.record_counts, which
writes these rows and then the LaneMinute rollup's, always in that order and last in the
transaction: the hot rows are then locked only for the commit.
On PostgreSQL a chunk whose every email was sent through one provider writes them inside
transitions.mark_sent_recorded's single statement instead (`add_plus_sql`), in the same order.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Mapping
from typing import Any

from django.db import connection

from notifications.models import MetricTotal

Key = tuple[str, str, str, str]  # lane, provider, name, label

# Upper bounds of the histograms' buckets (inclusive, as Prometheus' `le`), in milliseconds.
# A send to a real API takes 50-500 ms, a hang up to EMAIL_TIMEOUT; the queue time of a
# transactional message is well under a second, a retried one minutes to hours.
SEND_BUCKETS_MS = (25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)
QUEUE_BUCKETS_MS = (100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 900000,
                    3600000, 14400000)
INF = "+Inf"
SUM = "sum"
HISTOGRAMS = {"send_ms": SEND_BUCKETS_MS, "queue_ms": QUEUE_BUCKETS_MS}


def bucket(bounds: tuple[int, ...], ms: int) -> str:
    """The label of the bucket `ms` falls in: its upper bound, or +Inf."""
    i = bisect_left(bounds, ms)
    return str(bounds[i]) if i < len(bounds) else INF


def observe(counts: Counter[Key], lane: str, provider: str, name: str, ms: int) -> None:
    """Add one observation of `ms` to histogram `name` in `counts`."""
    ms = max(0, int(ms))
    counts[(lane, provider, name, bucket(HISTOGRAMS[name], ms))] += 1
    counts[(lane, provider, name, SUM)] += ms


def add(counts: Mapping[Key, int]) -> None:
    """Add `counts` to their MetricTotal rows (created when missing), in one statement."""
    rows = sorted((key, n) for key, n in counts.items() if n)
    if not rows:
        return
    q = connection.ops.quote_name
    table = q(MetricTotal._meta.db_table)
    columns = ("lane", "provider", "name", "label", "value")
    sql = (
        f"INSERT INTO {table} ({', '.join(q(c) for c in columns)}) VALUES "
        + ", ".join(["(%s, %s, %s, %s, %s)"] * len(rows))
        + f" ON CONFLICT ({', '.join(q(c) for c in columns[:4])}) DO UPDATE SET "
        f"{q('value')} = {table}.{q('value')} + excluded.{q('value')}"
    )
    params: list[Any] = []
    for key, n in rows:
        params.extend((*key, n))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def add_plus_sql(plus: str) -> str:
    """PostgreSQL: `add` as part of a larger statement, its rows travelling as arrays
    (add_plus_params), where the SQL expression `plus` is added to the rows marked for it (a
    count the statement learns only as it runs: how many messages it moved)."""
    q = connection.ops.quote_name
    table = q(MetricTotal._meta.db_table)
    columns = ("lane", "provider", "name", "label", "value")
    value = f"t.value + CASE WHEN t.plus THEN {plus} ELSE 0 END"
    return (
        f"INSERT INTO {table} ({', '.join(q(c) for c in columns)}) "
        f"SELECT t.lane, t.provider, t.name, t.label, {value} "
        "FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::bigint[], %s::boolean[]) "
        "WITH ORDINALITY AS t(lane, provider, name, label, value, plus, i) "
        f"WHERE {value} <> 0 ORDER BY t.i "  # the sorted order every writer locks them in
        f"ON CONFLICT ({', '.join(q(c) for c in columns[:4])}) DO UPDATE SET "
        f"{q('value')} = {table}.{q('value')} + excluded.{q('value')}"
    )


def add_plus_params(counts: Mapping[Key, int], plus: Key) -> list[list[Any]]:
    """The parameters of add_plus_sql: `counts` and the `plus` row, sorted as `add` sorts."""
    keys = sorted({key for key, n in counts.items() if n} | {plus})
    return [*(list(column) for column in zip(*keys, strict=True)),
            [counts.get(key, 0) for key in keys], [key == plus for key in keys]]


def add_one(*, lane: str, name: str, label: str = "", provider: str = "", n: int = 1) -> None:
    add({(lane, provider, name, label): n})
