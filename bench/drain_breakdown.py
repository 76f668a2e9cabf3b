#!/usr/bin/env python
"""Where one drain's time goes: a single drain_lane() run in this process, phase by phase.

    .venv/bin/python bench/drain_breakdown.py [--messages 5000] [--batch-size 500]

Sets up its own database (`notify_bench_breakdown`, dropped at the end) and smtp-sink like
bench/delivery.py, queues N bulk messages, then runs the platform's unmodified
`notifications.delivery.drain_lane("bulk")` here (one worker, no django-q2), twice:

1. with timers around the drain's phases (claim, build, send, record, wake) and around every SQL
   statement (client-side wall time: PostgreSQL's work plus the round trip), and the CPU that
   this connection's PostgreSQL backend used;
2. under cProfile, for the functions that cost CPU (slower; only the ranking matters).

Nothing in the platform is changed: the module-level functions are wrapped in this process.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import re
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import delivery as bench  # noqa: E402
from bench import procstat  # noqa: E402

PHASES = ("claim_batch", "render_batch", "build_email", "Sender.send",
          "record_outcomes", "release_untried", "wake_lane", "wake_taken", "_next_due")


class Timers:
    def __init__(self) -> None:
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def wrap(self, name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            w0, c0 = time.perf_counter(), time.process_time()
            try:
                return func(*args, **kwargs)
            finally:
                self.wall[name] += time.perf_counter() - w0
                self.cpu[name] += time.process_time() - c0
                self.calls[name] += 1
        return timed


def statement_kind(sql: str) -> str:
    s = " ".join(sql.split())
    if s.startswith("SELECT") and "FOR UPDATE" in s:
        return "claim: SELECT ... FOR UPDATE SKIP LOCKED"
    if s.startswith("UPDATE \"notifications_message\""):
        if " CASE " in s:
            return "mark_sent: UPDATE message SET ... CASE WHEN pk=... (one WHEN per message)"
        if "\"attempts\" = (\"notifications_message\".\"attempts\" + " in s:
            return "claim: UPDATE message SET status='processing' WHERE id IN (...)"
        return "UPDATE message (other transition)"
    if s.startswith("INSERT INTO \"notifications_deliveryattempt\""):
        return "record: INSERT DeliveryAttempt (bulk_create)"
    if "notifications_lanestate" in s:
        return "wake: LaneState UPDATE/SELECT"
    if s.startswith("INSERT INTO \"django_q_ormq\""):
        return "wake: INSERT django_q task"
    m = re.match(r"^(\w+)(?: .*? FROM \"(\w+)\")?", s)
    return f"{m.group(1)} {m.group(2) or ''}".strip() if m else s[:40]


class SqlTimer:
    def __init__(self) -> None:
        self.wall: dict[str, float] = defaultdict(float)
        self.count: dict[str, int] = defaultdict(int)

    def __call__(self, execute: Callable, sql: str, params: Any, many: bool, context: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            kind = statement_kind(sql)
            self.wall[kind] += time.perf_counter() - t0
            self.count[kind] += 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", "-n", type=int, default=5000)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--email-backend", default=None)
    p.add_argument("--db-name", default="notify_bench_breakdown")
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args()
    args.workers, args.repeat = 1, 1

    work = Path(tempfile.mkdtemp(prefix="notify-breakdown-"))
    sink = bench.Sink()
    out_lines: list[str] = []

    def say(line: str = "") -> None:
        print(line, flush=True)
        out_lines.append(line)

    try:
        bench.recreate_db(args.db_name)
        bench.manage(args, "project.settings", "migrate", "--noinput", log_path=work / "setup.log")
        bench.manage(args, "project.settings", "seed_demo", log_path=work / "setup.log")
        os.environ.update(bench.base_env(args))
        os.environ.update({"EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": str(sink.port),
                           "NOTIFY_BATCH_SIZE": str(args.batch_size),
                           "NOTIFY_DRAIN_BUDGET_SECONDS": "600"})
        import django
        django.setup()
        if args.email_backend is None:
            args.email_backend = bench.default_backend()
        from django.conf import settings
        from django.db import connection

        settings.EMAIL_BACKEND = args.email_backend
        import notifications.delivery as delivery
        import notifications.wakeups as wakeups

        wakeups.async_task = lambda *a, **k: None  # a full batch would enqueue another drain

        say(f"# Drain breakdown: {args.messages:,} messages, batch {args.batch_size}, "
            f"{args.email_backend}, one drain in one process")
        say(f"- {datetime.now():%Y-%m-%d %H:%M}, load average {os.getloadavg()[0]:.2f}")
        say()

        # Pass 1: timers.
        bench.enqueue_ours(args, work)
        timers, sql_timer = Timers(), SqlTimer()
        originals = {name: getattr(delivery, name) for name in PHASES if hasattr(delivery, name)}
        for name, func in originals.items():
            setattr(delivery, name, timers.wrap(name, func))
        from notifications.senders import Sender

        original_send = Sender.send
        Sender.send = timers.wrap("Sender.send", original_send)  # type: ignore[method-assign]
        # Each status transition (claim, mark_sent, ...) on its own: wrap transitions._move.
        import notifications.transitions as transitions

        original_move = transitions._move

        def move(name: str, *a: Any, **k: Any) -> int:
            return timers.wrap(f"  move({name!r})", original_move)(name, *a, **k)

        transitions._move = move
        # On PostgreSQL mark_sent is its own statement, not a _move.
        original_mark_sent_pg = transitions._mark_sent_pg
        transitions._mark_sent_pg = timers.wrap(  # type: ignore[assignment]
            "  move('mark_sent')", original_mark_sent_pg)
        backend_pid = bench.sql("SELECT pg_backend_pid()")[0][0]
        pg0 = procstat.process_cpu_seconds(backend_pid)
        w0, c0 = time.perf_counter(), time.process_time()
        with connection.execute_wrapper(sql_timer):
            report = delivery.drain_lane("bulk")
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        pg_cpu = procstat.process_cpu_seconds(backend_pid) - pg0
        for name, func in originals.items():
            setattr(delivery, name, func)
        Sender.send = original_send  # type: ignore[method-assign]
        transitions._move = original_move
        transitions._mark_sent_pg = original_mark_sent_pg
        n = report.sent
        if n != args.messages:
            say(f"WARNING: drain sent {n} of {args.messages}: {report.as_dict()}")
        n = max(n, 1)
        say(f"one drain: {n:,} sent in {wall:.2f}s = {n / wall:,.0f} emails/s; "
            f"this process {cpu / n * 1e6:,.0f} µs CPU/email, its PostgreSQL backend "
            f"{pg_cpu / n * 1e6:,.0f} µs CPU/email")
        say()
        say("| phase | calls | wall ms | wall µs/email | share of wall | CPU µs/email |")
        say("|---|---:|---:|---:|---:|---:|")
        for name in [*PHASES, *sorted(k for k in timers.calls if k.startswith("  move"))]:
            if timers.calls.get(name):
                say(f"| {name} | {timers.calls[name]:,} | {timers.wall[name] * 1e3:,.0f} | "
                    f"{timers.wall[name] / n * 1e6:,.0f} | {timers.wall[name] / wall:.0%} | "
                    f"{timers.cpu[name] / n * 1e6:,.0f} |")
        say("")
        say("(Sender.send is the SMTP part, build_email is timed on its own; "
            "the move() rows are inside claim_batch and record_outcomes.)")
        say()
        say("| SQL statement | count | wall ms | wall µs/email | share of wall |")
        say("|---|---:|---:|---:|---:|")
        for kind, seconds in sorted(sql_timer.wall.items(), key=lambda kv: -kv[1]):
            say(f"| {kind} | {sql_timer.count[kind]:,} | {seconds * 1e3:,.0f} | "
                f"{seconds / n * 1e6:,.0f} | {seconds / wall:.0%} |")
        say()

        # Pass 2: cProfile.
        bench.enqueue_ours(args, work)
        profiler = cProfile.Profile()
        profiler.enable()
        delivery.drain_lane("bulk")
        profiler.disable()
        buf = io.StringIO()
        stats = pstats.Stats(profiler, stream=buf)
        stats.sort_stats("tottime").print_stats(args.top)
        say(f"cProfile, top {args.top} by own time (tottime):")
        say("```")
        body = buf.getvalue()
        start = body.find("   ncalls")
        say(body[start:].rstrip() if start >= 0 else body.rstrip())
        say("```")
        bench.RESULTS.mkdir(parents=True, exist_ok=True)
        out = bench.RESULTS / f"breakdown-{datetime.now():%Y%m%d-%H%M%S}.md"
        out.write_text("\n".join(out_lines) + "\n")
        print(f"\nwritten to {out.relative_to(ROOT)}")
        return 0
    finally:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
        sink.stop()
        try:
            from django.db import connections
            connections.close_all()
        except Exception:  # noqa: BLE001 (Django may not be set up yet)
            pass
        bench.drop_db(args.db_name)


if __name__ == "__main__":
    sys.exit(main())
