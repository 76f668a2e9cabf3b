#!/usr/bin/env python
"""Console benchmark: the operator pages with a million messages on PostgreSQL.

    make bench-console
    .venv/bin/python bench/console.py --messages 200000 --runs 10 --keep-db

1. Drops and recreates the PostgreSQL database `notify_bench_console`, migrates it, seeds the
   demo event types and an operator.
2. Seeds N messages (default 1,000,000) in one INSERT ... SELECT generate_series: both lanes,
   90% sent, 3% dead, 3% pending, 1% retry, 1% processing, 2% cancelled, created over the last
   30 days; and a day of per-minute rollup rows. Then VACUUM ANALYZE (what autovacuum does to a
   table this size in production: the visibility map and the planner's statistics).
3. Times each page through Django's test client, logged in as an operator (the whole request:
   middleware, queries, template), after two warm-up requests: p50 and p95 beside the goal.
4. Exits non-zero if a page's p95 misses the goal (300 ms; a requeue's dry run is shown without
   one). Drops the database unless --keep-db.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.pg import admin_sql, db_url  # noqa: E402

GOAL_MS = 300.0
# Pages timed and shown without the goal (the issue sets it for the dashboard and the lists):
# a requeue's dry run reads every letter it would act on to say what it would skip and why.
REPORTED_ONLY = ("requeue confirmation, one group (dry run)",)


def log(msg: str) -> None:
    print(f"[bench-console {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--messages", "-n", type=int, default=1_000_000)
    p.add_argument("--runs", type=int, default=20, help="timed requests per page (20)")
    p.add_argument("--db-name", default="notify_bench_console")
    p.add_argument("--keep-db", action="store_true", help="do not drop the database at the end")
    p.add_argument("--reuse-db", action="store_true",
                   help="time the pages of a database kept by --keep-db (no seeding)")
    return p.parse_args(argv)


def setup_django(db_name: str) -> None:
    os.environ["DATABASE_URL"] = db_url(db_name)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ.pop("REDIS_URL", None)
    os.environ["ALLOWED_HOSTS"] = "testserver"
    import django

    django.setup()


SEED_SQL = """
INSERT INTO notifications_message (
    event_type_id, producer_id, idempotency_key, payload_hash, to_email, to_name, locale, data,
    template_version_id, lane, priority, status, attempts, max_attempts, next_attempt_at,
    expires_at, last_error, dead_reason, provider_message_id, provider, failure_signature,
    created_at, updated_at, sent_at)
SELECT
    CASE WHEN i %% 2 = 0 THEN %(t_event)s ELSE %(b_event)s END,
    %(producer)s, 'key-' || i, '', 'user' || (i %% 50000) || '@example.com', '', 'en',
    '{"order_id": 1, "total": "1", "items": [], "headline": "h", "body": "b"}'::jsonb,
    CASE WHEN i %% 2 = 0 THEN %(t_version)s ELSE %(b_version)s END,
    CASE WHEN i %% 2 = 0 THEN 'transactional' ELSE 'bulk' END,
    CASE WHEN i %% 2 = 0 THEN 3 ELSE 9 END,
    s.status,
    CASE WHEN s.status = 'pending' THEN 0 ELSE 1 END, 5,
    created + interval '1 second', NULL,
    CASE WHEN s.status = 'dead' THEN 'AnymailRecipientsRefused: refused' ELSE '' END,
    CASE WHEN s.status = 'dead' THEN 'permanent_error' ELSE '' END,
    '', '', CASE WHEN s.status = 'dead' THEN left(md5((i %% 7)::text), 16) ELSE '' END,
    created, created, CASE WHEN s.status = 'sent' THEN created + interval '2 seconds' END
FROM generate_series(1, %(n)s) AS i
CROSS JOIN LATERAL (SELECT now() - (%(n)s - i) * (interval '30 days' / %(n)s) AS created) c
CROSS JOIN LATERAL (SELECT CASE
    WHEN i %% 100 < 90 THEN 'sent' WHEN i %% 100 < 93 THEN 'dead'
    WHEN i %% 100 < 96 THEN 'pending' WHEN i %% 100 < 97 THEN 'retry'
    WHEN i %% 100 < 98 THEN 'processing' ELSE 'cancelled' END AS status) s
"""

ROLLUP_SQL = """
INSERT INTO notifications_laneminute (lane, minute, sent, failed, dead)
SELECT lane, date_trunc('minute', now()) - m * interval '1 minute',
       (m * 7) % 400, (m * 3) % 20, m % 3
FROM generate_series(0, 1439) AS m CROSS JOIN (VALUES ('transactional'), ('bulk')) AS l(lane)
"""


def seed(n: int) -> None:
    from django.core.management import call_command
    from django.db import connection

    from notifications.demo import seed_demo
    from notifications.models import EventType, Producer
    from notifications.services import INTERNAL_PRODUCER
    from templates_app.selectors import template_version_active

    log("migrating")
    call_command("migrate", verbosity=0)
    seed_demo()
    producer, _ = Producer.objects.get_or_create(name=INTERNAL_PRODUCER)
    t_event = EventType.objects.get(key="order.placed")
    b_event = EventType.objects.get(key="marketing.newsletter")
    params = {
        "n": n, "producer": producer.pk, "t_event": t_event.pk, "b_event": b_event.pk,
        "t_version": template_version_active(template=t_event.template, locale="en").pk,
        "b_version": template_version_active(template=b_event.template, locale="en").pk,
    }
    log(f"seeding {n:,} messages")
    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute(SEED_SQL, params)
        cursor.execute(ROLLUP_SQL)
    log(f"seeded in {time.monotonic() - started:.1f} s; VACUUM ANALYZE")
    connection.ensure_connection()
    old_autocommit = connection.get_autocommit()
    connection.set_autocommit(True)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE notifications_message")
        cursor.execute("VACUUM ANALYZE notifications_laneminute")
    connection.set_autocommit(old_autocommit)


def pages() -> list[tuple[str, str]]:
    from django.urls import reverse

    from notifications.delivery import message_id_for
    from notifications.models import Message

    some = Message.objects.filter(status="dead").order_by("-id").values_list("pk", flat=True)[0]
    version, group = Message.objects.filter(pk=some).values_list(
        "template_version_id", "failure_signature")[0]
    changelist = reverse("admin:notifications_message_changelist")
    return [
        ("dashboard", reverse("admin:notifications_message_dashboard")),
        ("dashboard JSON (refresh)", reverse("admin:notifications_message_dashboard_data")),
        ("messages", changelist),
        ("messages ?status=dead&lane=bulk", f"{changelist}?status=dead&lane=bulk"),
        ("messages ?status=sent", f"{changelist}?status=sent"),
        ("messages, page 50", f"{changelist}?p=50"),
        ("messages, search Message-ID", f"{changelist}?q={message_id_for(some)}"),
        ("messages, search recipient", f"{changelist}?q=user123@example.com"),
        ("dead letters", reverse("admin:dlq_deadletter_changelist")),
        ("dead letters ?lane=transactional",
         reverse("admin:dlq_deadletter_changelist") + "?lane=transactional"),
        ("dead letters, grouped", reverse("admin:dlq_deadletter_groups")),
        ("a message's page", reverse("admin:notifications_message_change", args=[some])),
        ("a dead letter's page", reverse("admin:dlq_deadletter_change", args=[some])),
        ("requeue confirmation, one group (dry run)",
         reverse("admin:dlq_deadletter_confirm", args=["requeue"]) + f"?signature={group}"),
        ("template activation (blast radius)",
         reverse("admin:templates_app_templateversion_activate", args=[version])),
        ("/metrics (a Prometheus scrape)", reverse("metrics")),
    ]


def time_pages(runs: int) -> list[tuple[str, float, float, int]]:
    from django.contrib.auth.models import Group, User
    from django.test import Client

    user, _ = User.objects.get_or_create(username="bench-operator", defaults={"is_staff": True})
    user.groups.add(Group.objects.get(name="operators"))
    client = Client()
    client.force_login(user)
    results = []
    for name, url in pages():
        times = []
        for i in range(runs + 2):
            started = time.perf_counter()
            response = client.get(url)
            if hasattr(response, "streaming_content"):
                b"".join(response.streaming_content)
            elapsed = (time.perf_counter() - started) * 1000
            if response.status_code != 200:
                raise SystemExit(f"{name}: HTTP {response.status_code} for {url}")
            if i >= 2:
                times.append(elapsed)
        times.sort()
        p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
        results.append((name, statistics.median(times), p95, len(times)))
        log(f"{name}: p50 {statistics.median(times):.1f} ms, p95 {p95:.1f} ms")
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.reuse_db:
        admin_sql(f'DROP DATABASE IF EXISTS "{args.db_name}" WITH (FORCE)')
        admin_sql(f'CREATE DATABASE "{args.db_name}"')
    setup_django(args.db_name)
    try:
        if not args.reuse_db:
            seed(args.messages)
        from notifications.models import Message
        from notifications.selectors import table_estimate

        log(f"table holds ≈{table_estimate(Message):,} messages (pg_class estimate)")
        results = time_pages(args.runs)
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep_db:
            admin_sql(f'DROP DATABASE IF EXISTS "{args.db_name}" WITH (FORCE)')
    print()
    print(f"{'page':<44}{'p50 ms':>9}{'p95 ms':>9}{'goal ms':>9}  result")
    missed = 0
    for name, p50, p95, _ in results:
        if name in REPORTED_ONLY:
            print(f"{name:<44}{p50:>9.1f}{p95:>9.1f}{'-':>9}  (no goal)")
            continue
        ok = p95 < GOAL_MS
        missed += not ok
        print(f"{name:<44}{p50:>9.1f}{p95:>9.1f}{GOAL_MS:>9.0f}  {'ok' if ok else 'MISSED'}")
    print(f"\n{args.messages:,} messages, {args.runs} timed requests per page "
          f"(Django test client, operator, PostgreSQL)")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
