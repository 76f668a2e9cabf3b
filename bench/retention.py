#!/usr/bin/env python
"""Retention under load: delivery's rate while a million old rows are deleted, against alone.

    make bench-retention
    .venv/bin/python bench/retention.py --old 200000 --messages 10000     # a quick look

1. Recreates the PostgreSQL database `notify_bench_retention`, migrates, seeds the demo.
2. Copies one real sent message --old times (default 1,000,000) with one DeliveryAttempt each,
   created and last changed 40 days ago (INSERT ... SELECT generate_series), then VACUUM ANALYZE.
3. Runs, in this order: delivery alone; delivery while `manage.py retention` deletes the old rows
   (the same code as the scheduled task, with the default batch and pause); delivery alone again.
   Each delivery is --messages newsletters through a real bulk `qcluster` (project defaults) and
   Anymail's Postmark backend to the fake Postmark at --latency (100 ms).
4. Prints the delivery rates side by side and the rows the deleter removed during the delivery
   (it is stopped when the delivery ends, so the second alone run is clean), then runs it alone
   until every old row is gone and reports that rate too.
Goal (issue 11): delivery during the deletion within 10 % of its rate alone (the mean of the two
alone runs). Exits 1 when missed. Writes bench/results/retention-<timestamp>.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import delivery as bench  # noqa: E402
from bench.provider import Fake, provider_env  # noqa: E402

PY = sys.executable
GOAL = 0.90


def log(msg: str) -> None:
    print(f"[bench-retention {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--old", type=int, default=1_000_000, help="old sent rows to delete (1M)")
    p.add_argument("--messages", "-n", type=int, default=20_000,
                   help="emails per delivery run (20,000)")
    p.add_argument("--latency", type=float, default=0.1, help="fake provider latency (0.1 s)")
    p.add_argument("--workers", type=int, default=2, help="Q_WORKERS_BULK (2)")
    p.add_argument("--duties", default="0.1,1",
                   help="`manage.py retention --duty` of the deleter, one delivery run each "
                        "(1 = no pauses); `scheduled` instead runs the real Schedule inside "
                        "the bulk cluster (2 s a minute in a bulk worker): give it --messages "
                        "enough for a few minutes")
    p.add_argument("--db-name", default="notify_bench_retention")
    p.add_argument("--timeout", type=float, default=900.0)
    args = p.parse_args(argv)
    args.concurrency = None
    args.duties = [d.strip() if d.strip() == "scheduled" else float(d)
                   for d in args.duties.split(",") if d.strip()]
    return args


def seed_old(count: int) -> None:
    """`count` copies of one real sent message (and its attempt), 40 days old."""
    from django.db import connection

    from notifications.models import DeliveryAttempt, Message
    from notifications.services import notify

    template = notify(event="marketing.newsletter", to="old@example.com",
                      data={"headline": "Old", "body": "News"})
    fields = [f.column for f in Message._meta.concrete_fields if f.column != "id"]
    set_to = {"status": "'sent'", "created_at": "now() - interval '40 days'",
              "updated_at": "now() - interval '40 days'",
              "sent_at": "now() - interval '40 days'", "idempotency_key": "NULL",
              "to_email": "'old' || g || '@example.com'"}
    columns = ", ".join(fields)
    values = ", ".join(set_to.get(c, c) for c in fields)
    attempt_fields = [f.column for f in DeliveryAttempt._meta.concrete_fields if f.column != "id"]
    with connection.cursor() as cur:
        cur.execute(f"INSERT INTO notifications_message ({columns}) SELECT {values} "
                    f"FROM notifications_message, generate_series(1, %s) g WHERE id = %s",
                    [count, template.pk])
        a_values = {"message_id": "m.id", "number": "1", "started_at": "m.created_at",
                    "duration_ms": "100", "outcome": "'sent'", "error_class": "''",
                    "error_code": "''", "error_message": "''", "provider_message_id": "''",
                    "provider": "'default'", "worker": "'bench'"}
        cur.execute(f"INSERT INTO notifications_deliveryattempt ({', '.join(attempt_fields)}) "
                    f"SELECT {', '.join(a_values[c] for c in attempt_fields)} "
                    f"FROM notifications_message m WHERE m.id <> %s", [template.pk])
        cur.execute("DELETE FROM notifications_message WHERE id = %s", [template.pk])


def label(duty: float | str) -> str:
    return ("the scheduled task in the bulk cluster" if duty == "scheduled"
            else f"`retention --duty {duty:g}`")


def sizes() -> dict[str, float]:
    """MB on disk (table + indexes + TOAST) and dead rows of the two big tables."""
    rows = bench.sql(
        "SELECT relname, pg_total_relation_size(relid) / 1048576.0, n_dead_tup, n_live_tup "
        "FROM pg_stat_user_tables WHERE relname IN "
        "('notifications_message', 'notifications_deliveryattempt')")
    return {f"{name}_{k}": float(v) for name, mb, dead, live in rows
            for k, v in (("mb", mb), ("dead", dead), ("live", live))}


def old_left() -> int:
    return bench.sql("SELECT count(*) FROM notifications_message "
                     "WHERE created_at < now() - interval '30 days'")[0][0]


def deliver(args: argparse.Namespace, work: Path, name: str,
            duty: float | str | None = None) -> dict:
    """Queue --messages newsletters, drain them with a real bulk cluster; emails/s."""
    from notifications.wakeups import wake_lane

    bench.sql("DELETE FROM notifications_deliveryattempt WHERE message_id IN (SELECT id FROM "
              "notifications_message WHERE created_at > now() - interval '1 day')")
    bench.sql("DELETE FROM notifications_message WHERE created_at > now() - interval '1 day'")
    bench.enqueue(args, "ours", "project.settings", work / "enqueue.log")
    bench.vacuum_analyze("notifications_message")
    bench.sql("UPDATE django_q_schedule SET next_run = now() + interval '1 hour'")
    if duty == "scheduled":  # the real task, in the bulk cluster, every minute from now
        bench.sql("UPDATE django_q_schedule SET next_run = now(), minutes = 1 "
                  "WHERE name = 'retention'")
    bench.sql("DELETE FROM django_q_ormq")
    bench.sql("UPDATE notifications_lanestate SET wake_pending = false")
    fake = Fake(args.latency, work / f"fake-{name}.log")
    deleter = None
    try:
        env = provider_env(args, fake, "project.settings")
        env.update({"Q_CLUSTER_NAME": "bulk", "Q_WORKERS_BULK": str(args.workers)})
        cluster = bench.Cluster(env, work / f"qcluster-{name}.log")
        try:
            cluster.wait_running(args.workers)
            old0 = old_left()
            if isinstance(duty, float):
                deleter = subprocess.Popen(
                    [PY, "manage.py", "retention", "--duty", str(duty)], cwd=ROOT,
                    env=bench.base_env(args),
                    stdout=open(work / "retention.log", "ab"), stderr=subprocess.STDOUT)
                time.sleep(1.0)  # it is deleting before the drain starts
            t0 = time.time()
            wake_lane("bulk", force=True)
            deadline = time.monotonic() + args.timeout
            left_sql = ("SELECT count(*) FROM notifications_message "
                        "WHERE status IN ('pending', 'retry', 'processing')")
            while bench.sql(left_sql)[0][0] > 0:
                if time.monotonic() > deadline or cluster.proc.poll() is not None:
                    raise RuntimeError(f"{name}: not drained; see {cluster.log_path}")
                time.sleep(0.2)
            if deleter is not None:  # stopped with the delivery: a killed batch rolls back
                if deleter.poll() is not None:
                    raise RuntimeError("the deleter finished before the delivery: use --old "
                                       "larger or --messages smaller")
                bench.stop_process(deleter, 30)
        finally:
            cluster.stop()
        first, last = bench.sql(
            "SELECT extract(epoch FROM min(sent_at)), extract(epoch FROM max(sent_at)) "
            "FROM notifications_message WHERE created_at > now() - interval '1 day'")[0]
        stats = fake.stats()
    finally:
        fake.stop()
    seconds = float(last) - t0
    deleted = old0 - old_left()
    result = {"rate": args.messages / seconds, "seconds": seconds, "deleted": deleted,
              "accepted": stats["accepted"], "once": stats["max_accepted_per_message_id"] == 1}
    log(f"{name}: {result['rate']:,.0f} emails/s over {seconds:.1f} s; "
        f"{deleted:,} old rows deleted meanwhile")
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    work = Path(f"/tmp/bench-retention-{stamp}")
    work.mkdir(parents=True)
    log(f"work dir {work}")
    bench.recreate_db(args.db_name)
    bench.manage(args, "project.settings", "migrate", "--noinput", log_path=work / "setup.log")
    bench.manage(args, "project.settings", "seed_demo", log_path=work / "setup.log")
    os.environ.update(bench.base_env(args))
    import django

    django.setup()
    try:
        t = time.monotonic()
        seed_old(args.old)
        bench.vacuum_analyze("notifications_message", "notifications_deliveryattempt")
        log(f"seeded {args.old:,} old sent messages and attempts in {time.monotonic() - t:.0f} s")
        seeded = sizes()
        alone1 = deliver(args, work, "alone-1")
        durings = [(duty, deliver(args, work, f"during-retention-{duty}", duty=duty))
                   for duty in args.duties]
        alone2 = deliver(args, work, "alone-2")
        rest = old_left()
        t = time.monotonic()
        with open(work / "retention.log", "ab") as out:
            subprocess.run([PY, "manage.py", "retention"], cwd=ROOT, check=True, stdout=out,
                           stderr=subprocess.STDOUT, env=bench.base_env(args))
        left = old_left()
        finish = time.monotonic() - t
        time.sleep(2)  # the statistics collector catches up
        deleted = sizes()
        bench.vacuum_analyze("notifications_message", "notifications_deliveryattempt")
        vacuumed = sizes()
    finally:
        bench.drop_db(args.db_name)
    alone = (alone1["rate"] + alone2["rate"]) / 2
    default_duty = durings[0][1]
    share = default_duty["rate"] / alone
    lines = [
        f"Retention while delivering, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"{os.cpu_count()} cores, PostgreSQL: {args.old:,} old sent messages (+1 attempt each) "
        f"deleted by `manage.py retention` (batches of 500, at the duty cycle shown) while a "
        f"real bulk cluster delivers {args.messages:,} emails through Anymail's Postmark "
        f"backend to the fake Postmark at {args.latency * 1000:.0f} ms.",
        "",
        "| run | emails/s | seconds | old rows deleted during it |",
        "|---|---:|---:|---:|",
        f"| alone | {alone1['rate']:,.0f} | {alone1['seconds']:.1f} | {alone1['deleted']:,} |",
        *(f"| while deleting, {label(duty)} | {d['rate']:,.0f} ({d['rate'] / alone:.0%}) "
          f"| {d['seconds']:.1f} | {d['deleted']:,} ({d['deleted'] / d['seconds']:,.0f}/s) |"
          for duty, d in durings),
        f"| alone again | {alone2['rate']:,.0f} | {alone2['seconds']:.1f} | "
        f"{alone2['deleted']:,} |",
        "",
        f"- the deleter alone at duty cycle 1: the remaining {rest:,} in {finish:.0f} s "
        f"({rest / max(finish, 1e-9):,.0f} messages/s with their attempts); {left:,} old rows "
        f"left",
        f"- {label(durings[0][0])}: {args.old:,} rows take about "
        f"{args.old / max(default_duty['deleted'] / default_duty['seconds'], 1e-9) / 60:,.0f} "
        f"min while delivery runs",
        f"- goal: delivery while deleting ({label(durings[0][0])}) >= {GOAL:.0%} of alone "
        f"(mean of both alone runs): {share:.0%} -> **{'PASS' if share >= GOAL else 'FAIL'}**",
        "",
        "Disk (MB, table + indexes; messages / attempts), and dead rows:",
        "",
        "| when | messages MB | attempts MB | messages dead rows |",
        "|---|---:|---:|---:|",
        *(f"| {when} | {z['notifications_message_mb']:,.0f} | "
          f"{z['notifications_deliveryattempt_mb']:,.0f} | "
          f"{z['notifications_message_dead']:,.0f} |"
          for when, z in (("seeded", seeded), ("after retention", deleted),
                          ("after VACUUM", vacuumed))),
        "",
        f"- each email accepted once: "
        f"{'yes' if all(r['once'] for r in (alone1, alone2, *(d for _, d in durings))) else 'NO'}",
    ]
    text = "\n".join(lines)
    print("\n" + text + "\n", flush=True)
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / f"retention-{stamp}.md").write_text(text + "\n")
    return 0 if share >= GOAL and left == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
