#!/usr/bin/env python
"""Delivery through a provider with real latency: ours against django-post-office, one run.

    make bench-provider                                  # 20, 100 and 400 ms
    .venv/bin/python bench/provider.py --latencies 0.1 --messages 3000

Real email APIs answer in 50-500 ms; a loopback SMTP sink answers in microseconds, so the SMTP
benchmark (bench/delivery.py) says nothing about them. Here both systems send through Anymail's
real Postmark backend to the fake Postmark (tests/fakes/postmark.py, in its own process) with a
fixed added latency per request:

1. Recreates the PostgreSQL database `notify_bench_provider` with our apps and post_office.
2. Per latency: starts the fake; queues N newsletters with notify_many; starts a real `qcluster`
   for the bulk lane with our defaults (NOTIFY_SEND_CONCURRENCY, 2 workers); wakes the lane and
   times until every message is `sent` (last sent_at). Checks with the fake that each message was
   accepted exactly once.
3. Queues M of the same emails in post_office and times `send_queued_mail --processes 1` (its
   defaults: 5 sending threads) through the same backend to the same fake.
4. Prints and writes (bench/results/provider-<timestamp>.md, and .json for bench/plots.py) a
   table with the ratio and the goals (>= 500 emails/s and >= 5x post-office at 100 ms).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import delivery as bench  # noqa: E402
from bench import procstat  # noqa: E402
from bench.pg import free_port  # noqa: E402

PY = sys.executable
POSTMARK = "anymail.backends.postmark.EmailBackend"
TOKEN = "bench-server-token"
GOAL_RATE, GOAL_RATIO, GOAL_LATENCY = 500.0, 5.0, 0.1


def log(msg: str) -> None:
    print(f"[bench-provider {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--latencies", default="0.02,0.1,0.4", help="seconds per request, comma list")
    p.add_argument("--messages", "-n", type=int, default=5000, help="emails for ours (5000)")
    p.add_argument("--postoffice-seconds", type=float, default=20.0,
                   help="size post-office's queue to take about this long (20)")
    p.add_argument("--workers", type=int, default=2, help="Q_WORKERS_BULK (2)")
    p.add_argument("--concurrency", type=int, default=None,
                   help="NOTIFY_SEND_CONCURRENCY (default: the project's)")
    p.add_argument("--skip-postoffice", action="store_true")
    p.add_argument("--db-name", default="notify_bench_provider")
    p.add_argument("--timeout", type=float, default=600.0, help="per run (600)")
    args = p.parse_args(argv)
    args.latencies = [float(x) for x in args.latencies.split(",") if x.strip()]
    args.batch_size = 200
    return args


class Fake:
    """The fake Postmark in a process of its own, so its CPU is not the benchmark's."""

    def __init__(self, latency: float, log_path: Path, *, token: str = TOKEN,
                 extra: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self._log = open(log_path, "ab")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [PY, "-m", "tests.fakes.postmark", "--port", str(self.port), "--latency",
             str(latency), "--token", token, *extra], cwd=ROOT, stdout=self._log,
            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(OSError):
                self.stats()
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the fake Postmark did not start; see {log_path}")
            time.sleep(0.1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def stats(self) -> dict[str, int]:
        with urllib.request.urlopen(f"{self.url}_fake/stats", timeout=5) as answer:
            return json.loads(answer.read())

    def cpu(self) -> float:
        return procstat.process_cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        bench.stop_process(self.proc, 10)
        self._log.close()


def provider_env(args: argparse.Namespace, fake: Fake, settings_module: str) -> dict[str, str]:
    env = bench.base_env(args, settings_module)
    env.update({"EMAIL_BACKEND": POSTMARK, "ANYMAIL_POSTMARK_SERVER_TOKEN": TOKEN,
                "ANYMAIL_POSTMARK_API_URL": fake.url})
    return env


def run_ours(args: argparse.Namespace, latency: float, work: Path) -> dict[str, object]:
    from notifications.wakeups import wake_lane

    sql = bench.sql
    sql("TRUNCATE notifications_deliveryattempt, notifications_message RESTART IDENTITY CASCADE")
    bench.enqueue(args, "ours", "project.settings", work / "enqueue.log")
    bench.vacuum_analyze("notifications_message", "notifications_deliveryattempt")
    sql("UPDATE django_q_schedule SET next_run = now() + interval '1 hour'")
    sql("DELETE FROM django_q_ormq")
    sql("UPDATE notifications_lanestate SET wake_pending = false")
    fake = Fake(latency, work / f"fake-ours-{latency}.log")
    try:
        env = provider_env(args, fake, "project.settings")
        env.update({"Q_CLUSTER_NAME": "bulk", "Q_WORKERS_BULK": str(args.workers)})
        if args.concurrency:
            env["NOTIFY_SEND_CONCURRENCY"] = str(args.concurrency)
        cluster = bench.Cluster(env, work / f"qcluster-{latency}.log")
        try:
            cluster.wait_running(args.workers)
            cpu0, fake0 = cluster.cpu(), fake.cpu()
            machine = procstat.MachineMeter()
            machine.start()
            t_wake = time.time()
            wake_lane("bulk", force=True)
            deadline = time.monotonic() + args.timeout
            left_sql = ("SELECT count(*) FROM notifications_message "
                        "WHERE status IN ('pending', 'retry', 'processing')")
            while (left := sql(left_sql)[0][0]) > 0:
                if time.monotonic() > deadline or cluster.proc.poll() is not None:
                    raise RuntimeError(
                        f"ours at {latency}s: {left} not sent; see {cluster.log_path}")
                time.sleep(0.2)
            cpu = machine.stop()
            worker_cpu, fake_cpu = cluster.cpu() - cpu0, fake.cpu() - fake0
        finally:
            cluster.stop()
        last = sql("SELECT extract(epoch FROM max(sent_at)) FROM notifications_message")[0][0]
        stats = fake.stats()
    finally:
        fake.stop()
    seconds = float(last) - t_wake
    statuses = dict(sql("SELECT status, count(*) FROM notifications_message GROUP BY status"))
    log_text = cluster.log_path.read_text(errors="replace")
    return {
        "rate": args.messages / seconds, "seconds": seconds, "statuses": statuses,
        "accepted": stats["accepted"], "requests": stats["requests"],
        "max_per_message": stats["max_accepted_per_message_id"],
        "max_in_flight": stats["max_in_flight"],
        "worker_cpu_us": worker_cpu / args.messages * 1e6,
        "fake_cores": fake_cpu / cpu["elapsed"], "machine_cores": cpu["busy"] / cpu["elapsed"],
        "task_timeouts": log_text.count("exceeded maximum timeout"),
    }


def run_postoffice(args: argparse.Namespace, latency: float, work: Path) -> dict[str, object]:
    sql = bench.sql
    # Sized to take about --postoffice-seconds at 5 threads, one request each at a time.
    count = max(100, min(args.messages, int(args.postoffice_seconds * 5 / latency)))
    sql("TRUNCATE post_office_log, post_office_email RESTART IDENTITY CASCADE")
    saved, args.messages = args.messages, count
    try:
        bench.enqueue(args, "postoffice", "bench.postoffice_settings", work / "enqueue.log")
    finally:
        args.messages = saved
    bench.vacuum_analyze("post_office_email", "post_office_log")
    fake = Fake(latency, work / f"fake-postoffice-{latency}.log")
    try:
        env = provider_env(args, fake, "bench.postoffice_settings")
        t0 = time.time()
        with open(work / f"send_queued_mail-{latency}.log", "ab") as out:
            subprocess.run([PY, "manage.py", "send_queued_mail", "--processes", "1",
                            "--lockfile", str(work / "post_office")], cwd=ROOT, env=env,
                           stdout=out, stderr=subprocess.STDOUT, check=True,
                           timeout=args.timeout)
        stats = fake.stats()
    finally:
        fake.stop()
    counts = dict(sql("SELECT status, count(*) FROM post_office_email GROUP BY status"))
    first = sql("SELECT extract(epoch FROM min(last_updated)) FROM post_office_email "
                "WHERE status = 0")[0][0]
    last = sql("SELECT extract(epoch FROM max(last_updated)) FROM post_office_email "
               "WHERE status = 0")[0][0]
    sent = counts.get(0, 0)
    # From its first recorded send to its last: its start-up is not counted against it.
    seconds = max(1e-3, float(last) - float(first)) if sent > 1 else float("nan")
    return {"rate": (sent - 1) / seconds if sent > 1 else 0.0, "count": count, "sent": sent,
            "statuses": counts, "accepted": stats["accepted"], "since_start": float(last) - t0}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    work = Path(os.environ.get("BENCH_WORK", f"/tmp/bench-provider-{stamp}"))
    work.mkdir(parents=True, exist_ok=True)
    log(f"work dir {work}")
    bench.recreate_db(args.db_name)
    bench.manage(args, "bench.postoffice_settings", "migrate", "--noinput",
                 log_path=work / "setup.log")
    bench.manage(args, "project.settings", "seed_demo", log_path=work / "setup.log")
    os.environ.update(bench.base_env(args))
    import django

    django.setup()
    from django.conf import settings

    concurrency = args.concurrency or settings.NOTIFY["SEND_CONCURRENCY"]
    rows = []
    try:
        for latency in args.latencies:
            log(f"{latency * 1000:.0f} ms: ours, {args.messages:,} emails")
            ours = run_ours(args, latency, work)
            log(f"{latency * 1000:.0f} ms: ours {ours['rate']:,.0f} emails/s ({ours})")
            po = None
            if not args.skip_postoffice:
                po = run_postoffice(args, latency, work)
                log(f"{latency * 1000:.0f} ms: post-office {po['rate']:,.1f} emails/s ({po})")
            rows.append((latency, ours, po))
    finally:
        bench.drop_db(args.db_name)

    lines = [
        f"Delivery through Anymail's Postmark backend to a fake Postmark with added latency, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, PostgreSQL, ours: "
        f"{args.workers} bulk workers x NOTIFY_SEND_CONCURRENCY {concurrency}, "
        f"{args.messages:,} emails per run; django-post-office 3.12 `send_queued_mail "
        f"--processes 1` (5 threads, its default).",
        "",
        "| latency | ours emails/s | post-office emails/s | ours / post-office | ours: accepted "
        "once each | max in flight | worker CPU µs/email | fake's cores | task timeouts |",
        "|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    failed = False
    for latency, ours, po in rows:
        once = (ours["accepted"] == args.messages and ours["max_per_message"] == 1
                and ours["statuses"] == {"sent": args.messages})
        failed |= not once or bool(ours["task_timeouts"])
        ratio = ours["rate"] / po["rate"] if po and po["rate"] else float("nan")
        lines.append(
            f"| {latency * 1000:.0f} ms | {ours['rate']:,.0f} | "
            f"{po['rate']:,.1f} ({po['sent']:,} emails) | {ratio:.1f}x | "
            if po else f"| {latency * 1000:.0f} ms | {ours['rate']:,.0f} | - | - | ")
        lines[-1] += (f"{'yes' if once else 'NO'} | {ours['max_in_flight']} | "
                      f"{ours['worker_cpu_us']:,.0f} | {ours['fake_cores']:.2f} | "
                      f"{ours['task_timeouts']} |")
    goal = next(((o, p) for lat, o, p in rows if abs(lat - GOAL_LATENCY) < 1e-9), None)
    lines.append("")
    if goal is not None:
        ours, po = goal
        ok_rate = ours["rate"] >= GOAL_RATE
        lines.append(f"- goal >= {GOAL_RATE:,.0f} emails/s at 100 ms: {ours['rate']:,.0f} -> "
                     f"**{'PASS' if ok_rate else 'FAIL'}**")
        failed |= not ok_rate
        if po and po["rate"]:
            ratio = ours["rate"] / po["rate"]
            lines.append(f"- goal >= {GOAL_RATIO:.0f}x post-office at 100 ms: {ratio:.1f}x -> "
                         f"**{'PASS' if ratio >= GOAL_RATIO else 'FAIL'}**")
            failed |= ratio < GOAL_RATIO
    text = "\n".join(lines)
    print("\n" + text + "\n", flush=True)
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / f"provider-{stamp}.md").write_text(text + "\n")
    # The same figures for bench/plots.py.
    (results / f"provider-{stamp}.json").write_text(json.dumps({
        "bench": "provider", "stamp": stamp, "messages": args.messages,
        "workers": args.workers, "concurrency": concurrency, "cores": os.cpu_count(),
        "passed": not failed,
        "rows": [{"latency": latency, "ours": ours, "postoffice": po}
                 for latency, ours, po in rows],
    }, indent=1, default=str))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
