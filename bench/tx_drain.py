#!/usr/bin/env python
"""Where a transactional drain's CPU goes: one `drain_lane("transactional")` in this process while
a producer thread queues `order.placed` at a steady rate, as in the transactional lane of
`make bench-isolation`.

    .venv/bin/python bench/tx_drain.py [--rate 20] [--seconds 15] [--profile] [--top 40]

Sets up its own PostgreSQL database (`notify_bench_tx_drain`, dropped at the end), seeds the demo
event types, and starts the fake Postmark (tests/fakes/postmark.py, 50 ms) in a process of its
own; Anymail's Postmark backend sends to it. The producer calls `notify()` (the ingest's insert
and NOTIFY wake-up) RATE times a second; the drain waits for them as a lingering drain does
(notifications/listener.py), one email or two per claim.

Prints the drain thread's CPU per email (`time.thread_time`: its own thread only; the send
threads' HTTP is not in it) and the SQL statements per email that went through Django's cursor
(the due probe is a prepared statement on psycopg's own cursor and is not counted). With
--profile, the same run under cProfile timed by thread CPU time: it slows the drain ~2x, so read
the ranking, not the totals.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import delivery as bench  # noqa: E402
from bench.provider import POSTMARK, TOKEN, Fake  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=20.0, help="events per second (20)")
    p.add_argument("--seconds", type=float, default=15.0, help="the drain's budget (15)")
    p.add_argument("--latency", type=float, default=0.05, help="the fake's answer time (0.05)")
    p.add_argument("--profile", action="store_true", help="run the drain under cProfile")
    p.add_argument("--top", type=int, default=40, help="functions shown with --profile (40)")
    p.add_argument("--db-name", default="notify_bench_tx_drain")
    return p.parse_args()


def main() -> int:
    args = parse_args()
    work = Path(tempfile.mkdtemp(prefix="notify-tx-drain-"))
    fake = Fake(args.latency, work / "fake.log")
    try:
        bench.recreate_db(args.db_name)
        for key in [k for k in os.environ if k.startswith(("NOTIFY_", "Q_", "ANYMAIL_", "EMAIL_"))]:
            del os.environ[key]
        os.environ.pop("REDIS_URL", None)
        os.environ.update({
            "DJANGO_SETTINGS_MODULE": "project.settings",
            "DATABASE_URL": bench.db_url(args.db_name),
            "DEBUG": "false", "SECRET_KEY": "bench-tx-drain-not-secret", "LOG_LEVEL": "WARNING",
            "VAR_DIR": str(work), "EMAIL_BACKEND": POSTMARK,
            "ANYMAIL_POSTMARK_SERVER_TOKEN": TOKEN, "ANYMAIL_POSTMARK_API_URL": fake.url,
        })
        for cmd in (("migrate", "-v0"), ("seed_demo",)):
            subprocess.run([sys.executable, "manage.py", *cmd], cwd=ROOT, check=True,
                           capture_output=True)
        return run(args)
    finally:
        fake.stop()
        bench.drop_db(args.db_name)


def run(args: argparse.Namespace) -> int:
    import django

    django.setup()
    from django.db import connection, connections

    import notifications.wakeups as wakeups
    from notifications import delivery
    from notifications.services import notify

    # Lingering drains take the mail: no django-q2 task is queued (no cluster runs here).
    wakeups.async_task = lambda *a, **k: None  # type: ignore[assignment]
    stop = threading.Event()

    def produce(count: int) -> None:
        start = time.monotonic()
        for i in range(count):
            if stop.is_set():
                break
            notify(event="order.placed", to={"email": f"buyer.{i}@example.com", "name": "B"},
                   data={"order_id": f"o-{i}", "total": "59.90",
                         "items": [{"name": "Wool coat", "qty": 1}]})
            time.sleep(max(0.0, start + (i + 1) / args.rate - time.monotonic()))
        connections.close_all()

    # Warm-up, not measured: imports, connections, template caches.
    warm = threading.Thread(target=produce, args=(20,))
    warm.start()
    warm.join()
    delivery.drain_lane("transactional", budget=3)

    statements: Counter[str] = Counter()

    def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        statements[" ".join(sql.split())[:72]] += 1
        return execute(sql, params, many, context)

    result: dict[str, Any] = {}

    def drain() -> None:
        profile = cProfile.Profile(time.thread_time)
        cpu = time.thread_time()
        if args.profile:
            profile.enable()
        with connection.execute_wrapper(count):
            result["report"] = delivery.drain_lane("transactional", budget=args.seconds)
        profile.disable()
        result["cpu"] = time.thread_time() - cpu
        result["profile"] = profile

    drainer = threading.Thread(target=drain)
    drainer.start()
    time.sleep(0.2)
    producer = threading.Thread(target=produce, args=(10**9,))
    producer.start()
    drainer.join()
    stop.set()
    producer.join()

    report = result["report"]
    n = max(report.sent, 1)
    print(f"transactional drain, {args.rate:g} events/s for {args.seconds:g} s, fake Postmark "
          f"at {args.latency * 1000:.0f} ms{' (under cProfile)' if args.profile else ''}: "
          f"{report.sent} sent in {report.batches} claims; drain thread CPU "
          f"{result['cpu'] / n * 1e6:,.0f} µs per email")
    print("\nSQL statements per email through Django's cursor:")
    for sql, calls in statements.most_common(12):
        print(f"  {calls / n:5.2f}  {sql}")
    if args.profile:
        out = io.StringIO()
        pstats.Stats(result["profile"], stream=out).sort_stats("cumulative").print_stats(args.top)
        print(out.getvalue())
    return 0 if report.sent else 1


if __name__ == "__main__":
    sys.exit(main())
