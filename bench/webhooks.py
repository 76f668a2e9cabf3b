#!/usr/bin/env python
"""Tracking-webhook benchmark: what our receiver adds to Anymail's view, per event, on PostgreSQL.

    make bench-webhooks
    .venv/bin/python bench/webhooks.py --events 2000

1. Drops and recreates the PostgreSQL database `notify_bench_webhooks`, migrates it, seeds the
   demo event types and N messages recorded as sent through Postmark (each with a Postmark
   MessageID, as mark_sent stores it).
2. Posts Postmark webhooks (the JSON Postmark sends, basic auth) through Django's test client,
   one event per request, timing each request whole (middleware, Anymail's parsing, our
   receiver, commit):
   - "Anymail alone": Delivery events with our receiver disconnected: the floor, what any
     Anymail receiver costs before it does anything;
   - "delivered": our receiver matching the message and moving it to delivered;
   - "hard bounce": moving it to bounced and suppressing the address;
   - "replay": the same Delivery events again (found by the unique key, rolled back).
3. Prints p50/p95 ms, events per second of one process, and queries per event side by side,
   and exits non-zero if an event of ours takes more than GOAL_QUERIES queries ("a few queries;
   heavy work deferred") or the database ends up wrong (every message delivered or bounced
   once, one TrackingEvent per event, one suppression per bounce).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.pg import admin_sql, db_url  # noqa: E402

GOAL_QUERIES = 10
AUTH = "hook:bench-secret"


def log(msg: str) -> None:
    print(f"[bench-webhooks {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--events", "-n", type=int, default=2000, help="events per kind (2000)")
    p.add_argument("--db-name", default="notify_bench_webhooks")
    p.add_argument("--keep-db", action="store_true")
    return p.parse_args(argv)


def setup_django(db_name: str) -> None:
    os.environ["DATABASE_URL"] = db_url(db_name)
    os.environ["DJANGO_SETTINGS_MODULE"] = "project.settings"
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ["ANYMAIL_WEBHOOK_SECRET"] = AUTH
    os.environ["ALLOWED_HOSTS"] = "testserver"
    for name in [k for k in os.environ if k.startswith("NOTIFY_") or k == "REDIS_URL"]:
        os.environ.pop(name)
    import django

    django.setup()


def seed(n: int) -> list[tuple[int, str, str]]:
    """2n transactional messages recorded sent via Postmark: (pk, Postmark id, address)."""
    from unittest import mock

    from django.core.management import call_command

    from notifications import transitions
    from notifications.delivery import claim_batch
    from notifications.demo import seed_demo
    from notifications.services import notify_many

    call_command("migrate", verbosity=0)
    seed_demo()
    data = {"order_id": 1, "total": "$1", "items": []}
    with mock.patch("notifications.wakeups.async_task", lambda *a, **k: "bench"):
        for start in range(0, 2 * n, 1000):
            notify_many([{"event": "order.placed", "to": f"user{i}@example.com", "data": data}
                         for i in range(start, min(2 * n, start + 1000))])
    out = []
    while batch := claim_batch("transactional", 1000):
        ids = {m.pk: f"pm-{m.pk:08d}-0000-0000-0000-000000000000" for m in batch}
        transitions.mark_sent(list(ids), token=batch[0].lease_token, provider="default",
                              provider_ids=ids)
        out += [(m.pk, ids[m.pk], m.to_email) for m in batch]
    return sorted(out)


def delivery(pk: int, pid: str, to: str) -> dict[str, Any]:
    return {"RecordType": "Delivery", "ServerID": 23, "MessageStream": "outbound",
            "MessageID": pid, "Recipient": to, "Tag": "order.placed",
            "DeliveredAt": "2026-12-02T10:00:00Z", "Details": "Test delivery webhook details",
            "Metadata": {"notification_id": str(pk), "notify_event": "order.placed"}}


def hard_bounce(pk: int, pid: str, to: str) -> dict[str, Any]:
    return {"RecordType": "Bounce", "ID": 4_000_000_000 + pk, "Type": "HardBounce",
            "TypeCode": 1, "Name": "Hard bounce", "Tag": "order.placed", "MessageID": pid,
            "ServerID": 23, "MessageStream": "outbound",
            "Description": "The server was unable to deliver your message (ex: unknown user, "
                           "mailbox not found).",
            "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
            "Email": to, "From": "noreply@example.com", "BouncedAt": "2026-12-02T10:00:00Z",
            "DumpAvailable": False, "Inactive": True, "CanActivate": True,
            "Subject": "Order 1 confirmed", "Content": "",
            "Metadata": {"notification_id": str(pk), "notify_event": "order.placed"}}


def timed(client: Any, bodies: list[dict[str, Any]]) -> tuple[list[float], list[int]]:
    from django.db import connection, reset_queries
    from django.test.utils import CaptureQueriesContext

    auth = "Basic " + base64.b64encode(AUTH.encode()).decode()
    times, queries = [], []
    for body in bodies:
        payload = json.dumps(body)
        # The query log is a deque of 9,000: once full, a capture counts nothing. Start empty.
        reset_queries()
        with CaptureQueriesContext(connection) as captured:
            start = time.perf_counter()
            response = client.post("/anymail/postmark/tracking/", payload,
                                   content_type="application/json", HTTP_AUTHORIZATION=auth)
            times.append((time.perf_counter() - start) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"webhook answered {response.status_code}: {response.content[:300]}")
        queries.append(len(captured.captured_queries))
    return times, queries


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    admin_sql(f'DROP DATABASE IF EXISTS "{args.db_name}" WITH (FORCE)')
    admin_sql(f'CREATE DATABASE "{args.db_name}"')
    setup_django(args.db_name)
    try:
        from anymail.signals import tracking
        from django.db.models import Count
        from django.test import Client

        from notifications.models import Status, Suppression, TrackingEvent
        from notifications.tracking import on_tracking

        n = args.events
        log(f"seeding {2 * n:,} sent messages")
        rows = seed(n)
        delivered, bounced = rows[:n], rows[n:]
        client = Client()
        kinds: list[tuple[str, list[float], list[int]]] = []

        def run(name: str, make: Callable[..., dict[str, Any]], which: list[Any]) -> None:
            times, queries = timed(client, [make(*r) for r in which])
            kinds.append((name, times, queries))
            log(f"{name}: {len(times):,} events")

        tracking.disconnect(on_tracking, dispatch_uid="notifications-tracking")
        run("Anymail alone (no receiver)", delivery, delivered)
        tracking.connect(on_tracking, dispatch_uid="notifications-tracking")
        run("delivered", delivery, delivered)
        run("hard bounce + suppression", hard_bounce, bounced)
        run("replay of a delivered", delivery, delivered)

        wrong = []
        statuses = dict(TrackingEvent.objects.values_list("message__status").annotate(
            n=Count("id")).order_by())
        if statuses.get(Status.DELIVERED) != n or statuses.get(Status.BOUNCED) != n:
            wrong.append(f"statuses {statuses}")
        if TrackingEvent.objects.count() != 2 * n:
            wrong.append(f"{TrackingEvent.objects.count()} events stored, expected {2 * n}")
        if Suppression.objects.filter(active=True).count() != n:
            wrong.append(f"{Suppression.objects.count()} suppressions, expected {n}")
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep_db:
            admin_sql(f'DROP DATABASE IF EXISTS "{args.db_name}" WITH (FORCE)')

    print()
    print(f"{'Postmark webhook, one event per request':<40}{'p50 ms':>8}{'p95 ms':>8}"
          f"{'events/s':>10}{'queries':>9}")
    missed = 0
    for name, times, queries in kinds:
        p95 = statistics.quantiles(times, n=20)[-1]
        rate = len(times) / (sum(times) / 1000)
        worst = max(queries)
        ours = not name.startswith("Anymail")
        over = ours and worst > GOAL_QUERIES
        missed += over
        print(f"{name:<40}{statistics.median(times):>8.2f}{p95:>8.2f}{rate:>10.0f}"
              f"{worst:>9}{'  MISSED' if over else ''}")
    print(f"\n{n:,} events per kind, one process, Django test client, PostgreSQL; queries = "
          f"the most one request ran (goal for ours: <= {GOAL_QUERIES}, savepoints included)")
    for problem in wrong:
        print(f"WRONG: {problem}")
    return 1 if missed or wrong else 0


if __name__ == "__main__":
    sys.exit(main())
