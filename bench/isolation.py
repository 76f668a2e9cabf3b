#!/usr/bin/env python
"""Lane isolation under load: transactional latency while a bulk burst drains, measured end to end.

    make bench-isolation
    .venv/bin/python bench/isolation.py --bulk 3000 --solo-seconds 10     # a quick look

Everything runs as it would in production, on one machine: gunicorn serving the API, one real
`qcluster` per lane with the project's defaults (workers, NOTIFY_SEND_CONCURRENCY, batch size,
sweeper), Anymail's Postmark backend pointed at the fake Postmark (tests/fakes/postmark.py) in a
process of its own, answering after --latency (50 ms).

1. Recreates the PostgreSQL database `notify_bench_isolation`, migrates it, seeds the demo event
   types and creates two producers with API keys (`create_producer_key`, default rate limits):
   `shop` (order.placed, password.reset) and `newsletter` (marketing.newsletter). Warm-up, not
   measured: 2 s of transactional events and 500 newsletters, so each worker has imported and
   connected (as in a cluster that has been up for a while).
2. Phase "transactional alone": --rate (20) events per second, open loop (each on schedule,
   whether or not the previous one was answered), POST /api/v1/events/ for --solo-seconds (30).
3. Phase "bulk alone": --bulk (20,000) newsletters through POST /api/v1/events/batch/ (1,000
   per request, one after another, as a newsletter service would), drained by the bulk cluster.
4. Phase "burst": the transactional producer starts, then the same --bulk newsletters are posted
   and drained; the transactional producer runs on until the last newsletter reached the fake.
   GET /health/ready/ is polled every 0.5 s meanwhile; any answer but 200 is recorded.
5. Phase "bulk alone" again, after the burst. The bulk share's reference is the mean of the two
   solo runs: this shared host's speed drifts by more than the goal's margin within minutes
   (the solo rate moved 562-841 emails/s between runs of the same code), and a reference taken
   only before the burst leans whichever way the drift goes. Each phase also reports the CPU
   the hypervisor stole (/proc/stat steal).

Latency of a transactional message = the time the fake Postmark read its request (its
`GET /_fake/log`, matched by X-Notification-Id to the id the API answered) minus the time the
API's 202 answer arrived at the producer. The provider's own 50 ms (spent after the request is
read) is not in it. "During the burst" = events whose answer arrived between the first newsletter
batch being posted and the last newsletter reaching the fake. A message that never arrives counts
as infinitely late. Bulk rate = newsletters / (last receipt - first receipt) at the fake.

For each transactional message the first DeliveryAttempt's started_at (taken on the send thread
just before the HTTP call) splits its latency into "waiting to be sent" (wake-up, django-q2
broker poll, drain start, claim, render) and "sending" (connection, request to the fake).

Goals: transactional p99 < 250 ms during the burst; bulk rate during the burst >= 80 % of its
rate alone (the mean of the two bulk-alone phases). Prints a table, writes
bench/results/isolation-<timestamp>.json (and .md), exits 1 on a missed goal or a lost,
duplicated or refused message.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import os
import platform
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import procstat  # noqa: E402
from bench.api import other_load, start_server  # noqa: E402
from bench.delivery import Cluster  # noqa: E402
from bench.pg import PG_HOST, PG_PORT, PG_USER, admin_sql, db_url  # noqa: E402
from bench.provider import POSTMARK, TOKEN, Fake  # noqa: E402

PY = sys.executable
RESULTS = ROOT / "bench" / "results"
GOAL_P99_MS = 250.0
GOAL_BULK_SHARE = 0.80
LANE_WORKERS = 2  # the project's default Q_WORKERS_TRANSACTIONAL / Q_WORKERS_BULK

HEADLINE = "Autumn collection is here: 20% off everything this weekend, {name}"
BODY = ("The new autumn collection brings warm wool coats, waterproof boots built for city rain "
        "and knitwear made from recycled yarn. This weekend only, members get 20% off "
        "everything, with free delivery on orders over $50 and free returns for 60 days.")


def log(msg: str) -> None:
    print(f"[bench-isolation {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rate", type=float, default=20.0, help="transactional events/s (20)")
    p.add_argument("--solo-seconds", type=float, default=30.0,
                   help="length of the transactional-alone phase (30)")
    p.add_argument("--bulk", type=int, default=20_000, help="newsletters per bulk phase (20000)")
    p.add_argument("--batch-size", type=int, default=1000, help="events per batch request (1000)")
    p.add_argument("--event", default="order.placed", choices=["order.placed", "password.reset"],
                   help="transactional event (order.placed)")
    p.add_argument("--latency", type=float, default=0.05, help="fake Postmark latency, s (0.05)")
    p.add_argument("--web-workers", type=int, default=3, help="gunicorn workers (3, as bench/api)")
    p.add_argument("--lead-seconds", type=float, default=2.0,
                   help="burst phase: transactional events before the first newsletter (2)")
    p.add_argument("--db-name", default="notify_bench_isolation")
    p.add_argument("--timeout", type=float, default=600.0, help="longest wait per phase (600)")
    p.add_argument("--quiet-cores", type=float, default=0.25,
                   help="before each phase wait until other processes use less than this (0.25)")
    p.add_argument("--quiet-timeout", type=float, default=120.0,
                   help="longest wait for a quiet machine per phase, s (120)")
    p.add_argument("--fake-nice", type=int, default=0,
                   help="experiment: the fake Postmark's niceness (0); a negative value stands "
                        "for a provider with CPUs of its own (needs root)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="experiment: an environment setting for every process of the platform, "
                        "e.g. NOTIFY_NICE_TRANSACTIONAL=-5 (repeatable; shown in the report)")
    p.add_argument("--keep-db", action="store_true")
    args = p.parse_args(argv)
    if any("=" not in item for item in args.set):
        p.error("--set takes NAME=VALUE")
    return args


# --- plumbing -------------------------------------------------------------------------------------

def pg(db: str, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=db,
                         autocommit=True) as conn:
        cur = conn.execute(query, params)
        return list(cur.fetchall()) if cur.description else []


def base_env(args: argparse.Namespace, fake: Fake, var_dir: Path) -> dict[str, str]:
    """The project's defaults: only the database, the provider and quiet logs are set."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NOTIFY_", "Q_", "ANYMAIL_", "EMAIL_"))}
    env.pop("REDIS_URL", None)  # the ORM broker, in the same database
    env.update({
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "DATABASE_URL": db_url(args.db_name),
        "DEBUG": "false",
        "SECRET_KEY": "bench-isolation-not-secret",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(ROOT),
        "VAR_DIR": str(var_dir),
        "EMAIL_BACKEND": POSTMARK,
        "ANYMAIL_POSTMARK_SERVER_TOKEN": TOKEN,
        "ANYMAIL_POSTMARK_API_URL": fake.url,
    })
    env.update(item.split("=", 1) for item in args.set)
    return env


def manage(env: dict[str, str], *cmd: str, log_path: Path) -> str:
    out = subprocess.run([PY, "manage.py", *cmd], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
    with open(log_path, "a") as f:
        f.write(out.stdout + out.stderr)
    if out.returncode:
        raise RuntimeError(f"manage.py {' '.join(cmd)} failed; see {log_path}")
    return out.stdout


def producer_token(env: dict[str, str], name: str, events: str, log_path: Path) -> str:
    out = manage(env, "create_producer_key", name, "--events", events, log_path=log_path)
    return out.strip().splitlines()[-1].strip()


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); inf counts as the latest."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


class FakeLog:
    """What the fake Postmark received, read incrementally from GET /_fake/log?since=<seq>."""

    def __init__(self, fake: Fake) -> None:
        self.fake = fake
        self.seq = 0
        self.received: dict[int, list[float]] = {}  # notification id -> receipt times
        self.not_accepted = 0

    def poll(self) -> int:
        with urllib.request.urlopen(f"{self.fake.url}_fake/log?since={self.seq}",
                                    timeout=30) as answer:
            entries = json.loads(answer.read())
        for e in entries:
            self.seq = max(self.seq, int(e["seq"]))
            if e.get("notification_id"):
                self.received.setdefault(int(e["notification_id"]), []).append(float(e["time"]))
            if not e.get("accepted"):
                self.not_accepted += 1
        return len(entries)

    def first(self, pk: int) -> float | None:
        times = self.received.get(pk)
        return min(times) if times else None


# --- producers ------------------------------------------------------------------------------------

@dataclass
class TxEvent:
    i: int
    sent: float  # time.time() the request was sent
    answered: float  # time.time() the whole answer was read
    status: int
    message_id: int | None
    error: str = ""


class TxProducer:
    """Open loop: event i is posted at start + i / rate, on a pool thread, answered or not."""

    def __init__(self, port: int, token: str, rate: float, event: str, tag: str) -> None:
        self.port, self.token, self.rate, self.event, self.tag = port, token, rate, event, tag
        self.events: list[TxEvent] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"tx-{tag}", daemon=True)
        self.late_starts = 0  # posts that left > 50 ms behind schedule (the producer lagged)

    def start(self) -> TxProducer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def body(self, i: int) -> bytes:
        to = {"email": f"buyer.{self.tag}.{i}@example.com", "name": f"Buyer {i}"}
        if self.event == "password.reset":
            data: dict[str, Any] = {"reset_url": f"https://example.com/reset/{self.tag}-{i}"}
        else:
            data = {"order_id": f"{self.tag}-{i}", "total": "59.90",
                    "items": [{"name": "Wool coat", "qty": 1}, {"name": "Rain boots", "qty": 2}]}
        return json.dumps({"event": self.event, "to": to, "data": data}).encode()

    def _post(self, i: int) -> None:
        body = self.body(i)
        sent = time.time()
        status, pk, error = 0, None, ""
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            conn.request("POST", "/api/v1/events/", body, {
                "Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
            answer = conn.getresponse()
            raw = answer.read()
            status = answer.status
            conn.close()
            if status == 202:
                pk = int(json.loads(raw)["id"])
            else:
                error = raw[:200].decode(errors="replace")
        except Exception as exc:  # a refused or timed-out request is a result too
            error = repr(exc)
        answered = time.time()
        with self._lock:
            self.events.append(TxEvent(i, sent, answered, status, pk, error))

    def _run(self) -> None:
        with ThreadPoolExecutor(16, thread_name_prefix=f"tx-{self.tag}") as pool:
            t0, i = time.monotonic(), 0
            while not self._stop.is_set():
                due = t0 + i / self.rate
                if self._stop.wait(max(0.0, due - time.monotonic())):
                    break
                if time.monotonic() - due > 0.05:
                    self.late_starts += 1
                pool.submit(self._post, i)
                i += 1


@dataclass
class BulkPost:
    ids: list[int]
    first_post: float
    last_answer: float
    requests: int
    refused_429: int
    errors: list[str]


def post_bulk(port: int, token: str, total: int, batch_size: int, tag: str) -> BulkPost:
    """The newsletter service: batches of `batch_size`, one after another; a 429 is retried after
    its Retry-After (counted)."""
    ids: list[int] = []
    errors: list[str] = []
    requests = refused = 0
    first_post = time.time()
    for start in range(0, total, batch_size):
        events = [{"event": "marketing.newsletter",
                   "to": {"email": f"reader.{tag}.{i}@example.com", "name": f"Reader {i}"},
                   "data": {"headline": HEADLINE.format(name=f"Reader {i}"), "body": BODY}}
                  for i in range(start, min(total, start + batch_size))]
        body = json.dumps({"events": events}).encode()
        while True:
            requests += 1
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            conn.request("POST", "/api/v1/events/batch/", body, {
                "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
            answer = conn.getresponse()
            raw = answer.read()
            conn.close()
            if answer.status == 429:
                refused += 1
                time.sleep(float(answer.getheader("Retry-After") or 1))
                continue
            break
        if answer.status != 202:
            errors.append(f"HTTP {answer.status}: {raw[:200]!r}")
            continue
        for item in json.loads(raw)["results"]:
            if item["status"] == 202:
                ids.append(int(item["message"]["id"]))
            else:
                errors.append(json.dumps(item)[:200])
    return BulkPost(ids, first_post, time.time(), requests, refused, errors)


class HealthPoller:
    """GET /health/ready/ every `interval` s; every answer is kept (time, status, ms, body)."""

    def __init__(self, port: int, interval: float = 0.5) -> None:
        self.port, self.interval = port, interval
        self.samples: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="health", daemon=True)

    def start(self) -> HealthPoller:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        t0, n = time.monotonic(), 0
        while not self._stop.is_set():
            started = time.time()
            status, body = 0, None
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health/ready/",
                                            timeout=5) as answer:
                    status, body = answer.status, json.loads(answer.read())
            except urllib.error.HTTPError as exc:
                status, body = exc.code, exc.read()[:300].decode(errors="replace")
            except Exception as exc:
                body = repr(exc)
            self.samples.append({"time": started, "status": status,
                                 "ms": (time.time() - started) * 1000, "body": body})
            n += 1
            self._stop.wait(max(0.0, t0 + n * self.interval - time.monotonic()))


def wait_quiet(args: argparse.Namespace) -> float:
    """Up to --quiet-timeout s until processes other than ours use < --quiet-cores: other
    sessions' tests share these cores. Returns the last reading (reported per phase)."""
    deadline = time.monotonic() + args.quiet_timeout
    load = other_load(1.0)
    if load > args.quiet_cores:
        log(f"machine busy ({load:.2f} cores elsewhere): waiting up to {args.quiet_timeout:.0f} s")
    while load > args.quiet_cores and time.monotonic() < deadline:
        load = other_load(1.0)
    if load > args.quiet_cores:
        log(f"still {load:.2f} cores busy elsewhere: measuring anyway")
    return round(load, 2)


class DrainTasks:
    """The transactional lane's drain tasks (django-q2 keeps only the last 100: read often)."""

    def __init__(self, db: str) -> None:
        self.db, self.rows = db, {}

    def poll(self) -> None:
        for tid, started, stopped in pg(self.db, (
                "SELECT id, extract(epoch FROM started), extract(epoch FROM stopped) FROM "
                "django_q_task WHERE \"group\" = 'drain-transactional'")):
            self.rows[tid] = (float(started), float(stopped))

    def summary(self, t0: float, t1: float) -> dict[str, Any]:
        inside = [(a, b) for a, b in self.rows.values() if t0 <= a <= t1]
        ms = [(b - a) * 1000 for a, b in inside]
        return {"drains": len(inside), "per_second": len(inside) / max(1e-3, t1 - t0),
                "duration_p50_ms": pct(ms, 50), "duration_p99_ms": pct(ms, 99)}


class PgWaits:
    """Samples pg_stat_activity every 0.1 s: what the bench database's active backends are doing
    (running, or waiting on a lock / IO / the client) and in which statement."""

    def __init__(self, db: str) -> None:
        self.db = db
        self.samples = 0
        self.seen: Counter[tuple[str, str]] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pg-waits", daemon=True)

    def start(self) -> PgWaits:
        self._thread.start()
        return self

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join()
        top = self.seen.most_common(8)
        locks = sum(n for (wait, _), n in self.seen.items() if wait.startswith("Lock"))
        return {"samples": self.samples,
                "active_backends_mean": sum(self.seen.values()) / max(1, self.samples),
                "lock_waits_per_sample": locks / max(1, self.samples),
                "top": [[wait, query, n] for (wait, query), n in top]}

    def _run(self) -> None:
        import psycopg

        with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=self.db,
                             autocommit=True) as conn:
            while not self._stop.wait(0.1):
                rows = conn.execute(
                    "SELECT coalesce(wait_event_type || ':' || wait_event, 'running'), "
                    "left(regexp_replace(query, '\\s+', ' ', 'g'), 70) FROM pg_stat_activity "
                    "WHERE datname = %s AND state = 'active' AND pid <> pg_backend_pid()",
                    [self.db]).fetchall()
                self.samples += 1
                self.seen.update((w, q) for w, q in rows)


# --- measuring ------------------------------------------------------------------------------------

def run_queue_ns(pids: list[int]) -> dict[tuple[int, int], int]:
    """(pid, tid) -> nanoseconds the thread has spent runnable but waiting for a CPU so far
    (/proc/<pid>/task/<tid>/schedstat, second field)."""
    out = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            for tid in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError, IndexError, ValueError):
                    with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                        out[(pid, int(tid))] = int(f.read().split()[1])
    return out


class Meter:
    """CPU per party over a phase (both clusters, gunicorn, the fake, PostgreSQL, the machine),
    and how long each party's threads waited for a CPU (sampled: threads that start and end
    between two samples are missed, so it is a lower bound)."""

    def __init__(self, db: str, parties: dict[str, int]) -> None:
        self.parties = parties  # name -> root pid of a process tree
        self.pg = procstat.PgMeter(db)
        self.machine = procstat.MachineMeter()

    def _trees(self) -> dict[str, list[int]]:
        stats = procstat.all_stats()
        return {name: procstat.tree_pids(pid, stats) for name, pid in self.parties.items()}

    def start(self) -> None:
        self.cpu0 = {name: procstat.tree_cpu_seconds(pid) for name, pid in self.parties.items()}
        self.rq: dict[str, dict[tuple[int, int], list[int]]] = {name: {} for name in self.parties}
        self._sample_rq(first=True)
        self.pg.start()
        self.machine.start()

    def _sample_rq(self, first: bool = False) -> None:
        for name, pids in self._trees().items():
            seen = self.rq[name]
            for key, ns in run_queue_ns(pids).items():
                entry = seen.setdefault(key, [ns if first else 0, ns])
                entry[1] = ns

    def sample(self) -> None:
        self.pg.sample()
        if self.parties:
            self._sample_rq()

    def stop(self) -> dict[str, float]:
        self._sample_rq()
        pg_cpu = self.pg.stop()
        machine = self.machine.stop()
        elapsed = machine["elapsed"]
        self.run_queue = {name: round(sum(b - a for a, b in seen.values()) / 1e9 / elapsed, 3)
                          for name, seen in self.rq.items()}
        cores = {name: (procstat.tree_cpu_seconds(pid) - self.cpu0[name]) / elapsed
                 for name, pid in self.parties.items()}
        cores["postgres"] = pg_cpu["bench"] / elapsed
        cores["benchmark"] = machine["bench_process"] / elapsed
        cores["machine"] = machine["busy"] / elapsed
        cores["other"] = max(0.0, cores["machine"] - sum(
            v for k, v in cores.items() if k != "machine"))
        cores["steal"] = machine["steal"] / elapsed
        cores["seconds"] = elapsed
        return {k: round(v, 3) for k, v in cores.items()}


def wait_received(fake_log: FakeLog, ids: list[int], meter: Meter, timeout: float,
                  what: str, drains: DrainTasks | None = None) -> bool:
    deadline = time.monotonic() + timeout
    wanted = set(ids)
    while True:
        fake_log.poll()
        meter.sample()
        if drains is not None:
            drains.poll()
        missing = len(wanted - fake_log.received.keys())
        if not missing:
            return True
        if time.monotonic() > deadline:
            log(f"{what}: {missing} of {len(wanted)} never reached the fake in {timeout:.0f} s")
            return False
        time.sleep(0.5)


def tx_summary(events: list[TxEvent], fake_log: FakeLog, starts: dict[int, tuple[float, int]],
               window: tuple[float, float] | None, t_ref: float) -> dict[str, Any]:
    """Latency figures of the transactional events answered inside `window` (all if None)."""
    chosen = [e for e in events if window is None or window[0] <= e.answered <= window[1]]
    accepted = [e for e in chosen if e.message_id is not None]
    latencies, waits, sends, trips, points = [], [], [], [], []
    lost = 0
    for e in accepted:
        got = fake_log.first(e.message_id)
        if got is None:
            lost += 1
            latencies.append(math.inf)
            continue
        ms = (got - e.answered) * 1000
        latencies.append(ms)
        points.append([round(e.answered - t_ref, 3), round(ms, 2)])
        if e.message_id in starts:
            started, round_trip = starts[e.message_id]
            waits.append((started - e.answered) * 1000)
            sends.append((got - started) * 1000)
            trips.append(round_trip)
    api_ms = [(e.answered - e.sent) * 1000 for e in accepted]
    dupes = sum(1 for e in accepted if len(fake_log.received.get(e.message_id, [])) > 1)
    return {
        "events": len(chosen), "accepted": len(accepted),
        "refused": Counter(str(e.status) for e in chosen if e.message_id is None),
        "lost": lost, "duplicated": dupes,
        "p50_ms": pct(latencies, 50), "p90_ms": pct(latencies, 90), "p99_ms": pct(latencies, 99),
        "max_ms": max(latencies, default=float("nan")),
        "wait_p50_ms": pct(waits, 50), "wait_p99_ms": pct(waits, 99),
        "send_p50_ms": pct(sends, 50), "send_p99_ms": pct(sends, 99),
        "round_trip_p50_ms": pct(trips, 50), "round_trip_p99_ms": pct(trips, 99),
        "api_p50_ms": pct(api_ms, 50), "api_p99_ms": pct(api_ms, 99),
        "points": points,  # [answer time - phase start s, latency ms]
    }


def bulk_summary(post: BulkPost, fake_log: FakeLog, t_ref: float) -> dict[str, Any]:
    times = sorted(fake_log.first(pk) or math.inf for pk in post.ids)
    got = [t for t in times if t != math.inf]
    span = (got[-1] - got[0]) if len(got) > 1 else float("nan")
    per_second = Counter(int(t - t_ref) for t in got)
    return {
        "posted": len(post.ids), "received": len(got), "lost": len(post.ids) - len(got),
        "duplicated": sum(1 for pk in post.ids if len(fake_log.received.get(pk, [])) > 1),
        "rate": len(got) / span if span and span == span else 0.0, "seconds": span,
        "first_receipt": got[0] - t_ref if got else None,
        "last_receipt": got[-1] - t_ref if got else None,
        "ingest_seconds": post.last_answer - post.first_post,
        "ingest_rate": len(post.ids) / max(1e-3, post.last_answer - post.first_post),
        "batch_requests": post.requests, "refused_429": post.refused_429, "errors": post.errors,
        "per_second": [[s, per_second[s]] for s in sorted(per_second)],
    }


def send_starts(db: str, ids: list[int]) -> dict[int, tuple[float, int]]:
    """Message id -> (epoch of its first DeliveryAttempt's started_at, its duration_ms: the
    provider's round trip as the sender saw it)."""
    rows = pg(db, "SELECT message_id, extract(epoch FROM started_at), duration_ms FROM "
                  "notifications_deliveryattempt WHERE number = 1 AND message_id = ANY(%s)",
              [ids])
    return {int(pk): (float(t), int(ms)) for pk, t, ms in rows}


def vacuum(db: str) -> None:
    for table in ("notifications_message", "notifications_deliveryattempt", "django_q_task",
                  "django_q_ormq"):
        pg(db, f"VACUUM ANALYZE {table}")


# --- phases ---------------------------------------------------------------------------------------

def warm_up(args, port, tokens, fake_log) -> None:
    """A few messages through each lane first, not measured: every worker process imports and
    connects on its first task, which a cluster that has been up for a while has long done."""
    log("warm-up (not measured): 2 s of transactional events and 500 newsletters")
    producer = TxProducer(port, tokens["shop"], args.rate, args.event, "warm").start()
    post = post_bulk(port, tokens["newsletter"], 500, 500, "warm")
    time.sleep(2)
    producer.stop()
    ids = [e.message_id for e in producer.events if e.message_id is not None] + post.ids
    wait_received(fake_log, ids, Meter(args.db_name, {}), 120, "warm-up")
    time.sleep(1)



def begin_phase(args: argparse.Namespace, meter: Any, title: str) -> tuple[float, float]:
    """Vacuum, wait for a quiet machine, start the meter: (other load before, the phase's t0)."""
    vacuum(args.db_name)
    quiet = wait_quiet(args)
    log(title)
    t_ref = time.time()
    meter.start()
    return quiet, t_ref

def phase_tx_alone(args, port, token, fake_log, meter) -> dict[str, Any]:
    quiet, t_ref = begin_phase(args, meter, f"phase 1/4, transactional alone: {args.rate:g} "
                               f"{args.event}/s for {args.solo_seconds:g} s")
    drains = DrainTasks(args.db_name)
    waits = PgWaits(args.db_name).start()
    producer = TxProducer(port, token, args.rate, args.event, "solo").start()
    end = time.monotonic() + args.solo_seconds
    while time.monotonic() < end:
        time.sleep(0.5)
        meter.sample()
        drains.poll()
    producer.stop()
    ids = [e.message_id for e in producer.events if e.message_id is not None]
    wait_received(fake_log, ids, meter, 60, "transactional alone", drains)
    cpu = meter.stop()
    pg_waits = waits.stop()
    out = tx_summary(producer.events, fake_log, send_starts(args.db_name, ids), None, t_ref)
    out.update(cpu=cpu, run_queue=meter.run_queue, late_starts=producer.late_starts,
               quiet_before=quiet,
               drains=drains.summary(t_ref, time.time()), pg_waits=pg_waits)
    log(f"transactional alone: p50 {out['p50_ms']:.0f} ms, p99 {out['p99_ms']:.0f} ms "
        f"({out['accepted']} events); cores {cpu}")
    return out


def phase_bulk_alone(args, port, token, fake_log, meter, which: str = "phase 2/4",
                     tag: str = "solo") -> dict[str, Any]:
    quiet, t_ref = begin_phase(args, meter, f"{which}, bulk alone: {args.bulk:,} newsletters "
                               "via the batch API")
    waits = PgWaits(args.db_name).start()
    result: dict[str, BulkPost] = {}
    poster = threading.Thread(target=lambda: result.setdefault("post", post_bulk(
        port, token, args.bulk, args.batch_size, tag)), daemon=True)
    poster.start()
    while poster.is_alive():
        poster.join(0.5)
        meter.sample()
    post = result["post"]
    wait_received(fake_log, post.ids, meter, args.timeout, "bulk alone")
    cpu = meter.stop()
    out = bulk_summary(post, fake_log, t_ref)
    out.update(cpu=cpu, run_queue=meter.run_queue, quiet_before=quiet, pg_waits=waits.stop())
    log(f"bulk alone: {out['rate']:,.0f} emails/s over {out['seconds']:.1f} s "
        f"(ingest {out['ingest_rate']:,.0f}/s); cores {cpu}")
    return out


def phase_burst(args, port, tokens, fake_log, meter) -> dict[str, Any]:
    quiet, t_ref = begin_phase(args, meter, f"phase 3/4, burst: {args.rate:g} {args.event}/s "
                               f"while {args.bulk:,} newsletters are posted and drained; "
                               "/health/ready/ every 0.5 s")
    drains = DrainTasks(args.db_name)
    waits = PgWaits(args.db_name).start()
    health = HealthPoller(port).start()
    producer = TxProducer(port, tokens["shop"], args.rate, args.event, "burst").start()
    time.sleep(args.lead_seconds)
    result: dict[str, BulkPost] = {}
    poster = threading.Thread(target=lambda: result.setdefault("post", post_bulk(
        port, tokens["newsletter"], args.bulk, args.batch_size, "burst")), daemon=True)
    poster.start()
    while poster.is_alive():
        poster.join(0.5)
        meter.sample()
        drains.poll()
    post = result["post"]
    bulk_ok = wait_received(fake_log, post.ids, meter, args.timeout, "burst, bulk", drains)
    cpu = meter.stop()  # the burst's CPU: until the last newsletter arrived
    pg_waits = waits.stop()
    time.sleep(args.lead_seconds)
    producer.stop()
    health.stop()
    ids = [e.message_id for e in producer.events if e.message_id is not None]
    wait_received(fake_log, ids, Meter(args.db_name, {}), 60, "burst, transactional")
    bulk = bulk_summary(post, fake_log, t_ref)
    bulk_end = t_ref + bulk["last_receipt"] if bulk_ok and bulk["last_receipt"] else time.time()
    window = (post.first_post, bulk_end)
    starts = send_starts(args.db_name, ids)
    during = tx_summary(producer.events, fake_log, starts, window, t_ref)
    everything = tx_summary(producer.events, fake_log, starts, None, t_ref)
    bad = [s for s in health.samples if s["status"] != 200]
    over_mark = sum(1 for s in health.samples if isinstance(s["body"], dict) and any(
        lane.get("backlog") != "ok" for lane in s["body"]["checks"].get("lanes", {}).values()))
    log(f"burst: transactional p50 {during['p50_ms']:.0f} ms, p99 {during['p99_ms']:.0f} ms "
        f"({during['accepted']} events during the burst); bulk {bulk['rate']:,.0f} emails/s; "
        f"health non-200: {len(bad)} of {len(health.samples)}; cores {cpu}")
    return {
        "tx": during, "tx_all": everything, "bulk": bulk, "cpu": cpu,
        "run_queue": meter.run_queue,
        "late_starts": producer.late_starts, "quiet_before": quiet, "pg_waits": pg_waits,
        "drains": drains.summary(*window),
        "window": [window[0] - t_ref, window[1] - t_ref],
        "health": {
            "polls": len(health.samples), "non_200": len(bad),
            "non_200_samples": [{**s, "time": s["time"] - t_ref} for s in bad][:50],
            "p50_ms": pct([s["ms"] for s in health.samples], 50),
            "max_ms": max((s["ms"] for s in health.samples), default=float("nan")),
            "reported_over_high_water": over_mark,
        },
    }


# --- report ---------------------------------------------------------------------------------------

def fmt_ms(v: float) -> str:
    return "lost" if v == math.inf else f"{v:,.0f}"


def solo_rate(before: dict, after: dict) -> float:
    """Bulk alone, the reference of the bulk share: the mean of the runs before and after the
    burst. This host's speed drifts by more than the goal's margin within minutes (with or
    without steal to show for it), so one solo run before the burst is a biased reference."""
    return (before["rate"] + after["rate"]) / 2


def report(args: argparse.Namespace, solo_tx: dict, solo_bulk: dict, burst: dict,
           concurrency: int, loads: dict[str, str], solo_after: dict) -> tuple[str, bool]:
    tx, bulk = burst["tx"], burst["bulk"]
    solo = solo_rate(solo_bulk, solo_after)
    share = bulk["rate"] / solo if solo else 0.0
    ok_p99 = tx["p99_ms"] < GOAL_P99_MS
    # Both references must have delivered: a lost after-phase (rate 0) must not halve the mean.
    ok_share = share >= GOAL_BULK_SHARE and solo_bulk["rate"] > 0 and solo_after["rate"] > 0
    sane = all(p["lost"] == 0 and p["duplicated"] == 0
               for p in (solo_tx, solo_bulk, tx, bulk, solo_after)) \
        and not solo_tx["refused"] and not tx["refused"] and not solo_bulk["errors"] \
        and not bulk["errors"] and not solo_after["errors"]
    rows = [
        ("transactional events (answered 202)", f"{solo_tx['accepted']}", f"{tx['accepted']}"),
        ("transactional p50, ms", fmt_ms(solo_tx["p50_ms"]), fmt_ms(tx["p50_ms"])),
        ("transactional p90, ms", fmt_ms(solo_tx["p90_ms"]), fmt_ms(tx["p90_ms"])),
        ("transactional p99, ms", fmt_ms(solo_tx["p99_ms"]), fmt_ms(tx["p99_ms"])),
        ("transactional max, ms", fmt_ms(solo_tx["max_ms"]), fmt_ms(tx["max_ms"])),
        ("  of which waiting to be sent, p50 / p99 ms",
         f"{solo_tx['wait_p50_ms']:,.0f} / {solo_tx['wait_p99_ms']:,.0f}",
         f"{tx['wait_p50_ms']:,.0f} / {tx['wait_p99_ms']:,.0f}"),
        ("  of which sending (send start -> fake), p50 / p99 ms",
         f"{solo_tx['send_p50_ms']:,.0f} / {solo_tx['send_p99_ms']:,.0f}",
         f"{tx['send_p50_ms']:,.0f} / {tx['send_p99_ms']:,.0f}"),
        ("transactional send's provider round trip (attempt duration), p50 / p99 ms",
         f"{solo_tx['round_trip_p50_ms']:,.0f} / {solo_tx['round_trip_p99_ms']:,.0f}",
         f"{tx['round_trip_p50_ms']:,.0f} / {tx['round_trip_p99_ms']:,.0f}"),
        ("API answer (single event), p50 / p99 ms",
         f"{solo_tx['api_p50_ms']:,.0f} / {solo_tx['api_p99_ms']:,.0f}",
         f"{tx['api_p50_ms']:,.0f} / {tx['api_p99_ms']:,.0f}"),
        ("bulk emails/s (first to last receipt): alone before / after the burst; mean",
         f"{solo_bulk['rate']:,.0f} / {solo_after['rate']:,.0f}; {solo:,.0f}",
         f"{bulk['rate']:,.0f}"),
        ("bulk drain, s", f"{solo_bulk['seconds']:.1f}", f"{bulk['seconds']:.1f}"),
        ("bulk ingest via batch API, events/s", f"{solo_bulk['ingest_rate']:,.0f}",
         f"{bulk['ingest_rate']:,.0f}"),
        ("PostgreSQL: active backends / of them waiting on a lock, mean",
         f"{solo_tx['pg_waits']['active_backends_mean']:.2f} / "
         f"{solo_tx['pg_waits']['lock_waits_per_sample']:.2f}",
         f"{burst['pg_waits']['active_backends_mean']:.2f} / "
         f"{burst['pg_waits']['lock_waits_per_sample']:.2f}"),
        ("transactional drain tasks per second",
         f"{solo_tx['drains']['per_second']:.1f}", f"{burst['drains']['per_second']:.1f}"),
        ("transactional drain task duration, p50 / p99 ms",
         f"{solo_tx['drains']['duration_p50_ms']:,.0f} / "
         f"{solo_tx['drains']['duration_p99_ms']:,.0f}",
         f"{burst['drains']['duration_p50_ms']:,.0f} / {burst['drains']['duration_p99_ms']:,.0f}"),
        ("transactional cluster: threads waiting for a CPU, mean",
         f"{solo_tx['run_queue']['tx_cluster']:.2f}", f"{burst['run_queue']['tx_cluster']:.2f}"),
        (f"machine busy, cores (of {os.cpu_count()})",
         f"{solo_tx['cpu']['machine']:.2f} / {solo_bulk['cpu']['machine']:.2f}",
         f"{burst['cpu']['machine']:.2f}"),
        ("used outside the benchmark, cores",
         f"{solo_tx['cpu']['other']:.2f} / {solo_bulk['cpu']['other']:.2f}",
         f"{burst['cpu']['other']:.2f}"),
        ("stolen by the hypervisor, cores (alone: tx / bulk before / bulk after)",
         f"{solo_tx['cpu']['steal']:.2f} / {solo_bulk['cpu']['steal']:.2f} / "
         f"{solo_after['cpu']['steal']:.2f}", f"{burst['cpu']['steal']:.2f}"),
    ]
    h = burst["health"]
    lines = [
        f"Lane isolation, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, PostgreSQL; gunicorn {args.web_workers} workers; "
        f"one qcluster per lane with the project's defaults ({LANE_WORKERS} workers each, "
        f"NOTIFY_SEND_CONCURRENCY {concurrency}, the bulk cluster at niceness "
        f"{dict(i.split('=', 1) for i in args.set).get('NOTIFY_NICE_BULK', '10')} "
        f"(NOTIFY_NICE_BULK)); "
        + (f"EXPERIMENT: {', '.join(args.set)}; " if args.set else "") +
        f"Anymail Postmark backend -> fake Postmark at "
        f"{args.latency * 1000:.0f} ms. Transactional: {args.rate:g} {args.event}/s via "
        f"POST /api/v1/events/ ({args.solo_seconds:g} s alone); bulk: {args.bulk:,} "
        f"marketing.newsletter via POST /api/v1/events/batch/ ({args.batch_size} per request).",
        "",
        "| | alone | during the burst |",
        "|---|---:|---:|",
        *[f"| {a} | {b} | {c} |" for a, b, c in rows],
        "",
        "(\"alone\" machine figures: transactional phase / bulk phase. Cores by party during "
        f"the burst: {burst['cpu']}; threads waiting for a CPU, mean, by party: "
        f"{burst['run_queue']}.)",
        "",
        f"- goal transactional p99 < {GOAL_P99_MS:.0f} ms during the burst: "
        f"{fmt_ms(tx['p99_ms'])} ms -> **{'PASS' if ok_p99 else 'FAIL'}**",
        f"- goal bulk during the burst >= {GOAL_BULK_SHARE:.0%} of alone: "
        f"{bulk['rate']:,.0f} / {solo:,.0f} = {share:.0%} -> "
        f"**{'PASS' if ok_share else 'FAIL'}** (alone = the mean of {solo_bulk['rate']:,.0f} "
        f"before and {solo_after['rate']:,.0f} after the burst; against each: "
        f"{bulk['rate'] / max(solo_bulk['rate'], 1e-9):.0%} and "
        f"{bulk['rate'] / max(solo_after['rate'], 1e-9):.0%})",
        f"- every message delivered exactly once, none refused: "
        f"{'yes' if sane else 'NO'} (lost tx {solo_tx['lost']}/{tx['lost']}, bulk "
        f"{solo_bulk['lost']}/{bulk['lost']}/{solo_after['lost']}; duplicated tx "
        f"{solo_tx['duplicated']}/{tx['duplicated']}, bulk {solo_bulk['duplicated']}/"
        f"{bulk['duplicated']}/{solo_after['duplicated']}; bulk errors "
        f"{len(solo_bulk['errors'])}/{len(bulk['errors'])}/{len(solo_after['errors'])}; refused tx "
        f"{dict(solo_tx['refused'])}/{dict(tx['refused'])}; bulk 429 "
        f"{solo_bulk['refused_429']}/{bulk['refused_429']})",
        f"- GET /health/ready/ every 0.5 s during the burst: {h['polls']} polls, "
        f"{h['non_200']} not 200; p50 {h['p50_ms']:.0f} ms, max {h['max_ms']:.0f} ms; "
        f"{h['reported_over_high_water']} answers reported a lane over its high-water mark",
        "- PostgreSQL during the burst, active backends per 0.1 s sample by wait and statement: "
        + "; ".join(f"{n / max(1, burst['pg_waits']['samples']):.2f} {wait} `{query}`"
                    for wait, query, n in burst["pg_waits"]["top"][:5]),
        f"- load average: before {loads['before']}; after {loads['after']}; cores busy "
        f"elsewhere just before each phase: {solo_tx['quiet_before']} / "
        f"{solo_bulk['quiet_before']} / {burst['quiet_before']} / {solo_after['quiet_before']}"
        + (f"; EXPERIMENT: the fake Postmark at nice {args.fake_nice}" if args.fake_nice
           else ""),
    ]
    return "\n".join(lines), ok_p99 and ok_share and sane


def loadavg() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "?"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    work = Path(os.environ.get("BENCH_WORK", f"/tmp/bench-isolation-{stamp}"))
    work.mkdir(parents=True, exist_ok=True)
    loads = {"before": loadavg()}
    log(f"work dir {work}; load average {loads['before']}")
    admin_sql(f'DROP DATABASE IF EXISTS "{args.db_name}" WITH (FORCE)')
    admin_sql(f'CREATE DATABASE "{args.db_name}"')
    fake = Fake(args.latency, work / "fake.log")
    if args.fake_nice:  # before any connection: its handler threads inherit the main thread's
        os.setpriority(os.PRIO_PROCESS, fake.proc.pid, args.fake_nice)
    server = None
    clusters: list[Cluster] = []
    try:
        env = base_env(args, fake, work / "var")
        setup = work / "setup.log"
        manage(env, "migrate", "--noinput", log_path=setup)
        manage(env, "seed_demo", log_path=setup)
        tokens = {
            "shop": producer_token(env, "shop", "order.placed,password.reset", setup),
            "newsletter": producer_token(env, "newsletter", "marketing.newsletter", setup),
        }
        concurrency = int(manage(env, "shell", "-c", "from django.conf import settings; "
                                 "print(settings.NOTIFY['SEND_CONCURRENCY'])",
                                 log_path=setup).split()[-1])
        server = start_server(args, env, args.web_workers, 1, work / "gunicorn.log")
        clusters.append(Cluster({**env, "Q_CLUSTER_NAME": "transactional"},
                                work / "qcluster-transactional.log"))
        bulk_env, bulk_log = {**env, "Q_CLUSTER_NAME": "bulk"}, work / "qcluster-bulk.log"
        clusters.append(Cluster(bulk_env, bulk_log))
        for cluster in clusters:
            cluster.wait_running(LANE_WORKERS)
        log(f"gunicorn on port {server.port}, clusters up, fake Postmark at {fake.url}")
        meter = Meter(args.db_name, {"tx_cluster": clusters[0].proc.pid,
                                     "bulk_cluster": clusters[1].proc.pid,
                                     "gunicorn": server.proc.pid, "fake": fake.proc.pid})
        fake_log = FakeLog(fake)
        warm_up(args, server.port, tokens, fake_log)
        solo_tx = phase_tx_alone(args, server.port, tokens["shop"], fake_log, meter)
        solo_bulk = phase_bulk_alone(args, server.port, tokens["newsletter"], fake_log, meter)
        burst = phase_burst(args, server.port, tokens, fake_log, meter)
        solo_after = phase_bulk_alone(args, server.port, tokens["newsletter"], fake_log, meter,
                                      "phase 4/4", "after")
        statuses = dict(pg(args.db_name, "SELECT status, count(*) FROM notifications_message "
                                         "GROUP BY status"))
        timeouts = sum(c.log_path.read_text(errors="replace").count("exceeded maximum timeout")
                       for c in clusters)
    finally:
        for cluster in clusters:
            cluster.stop()
        if server is not None:
            server.stop()
        fake.stop()
        if not args.keep_db:
            with contextlib.suppress(Exception):
                admin_sql(f'DROP DATABASE IF EXISTS "{args.db_name}" WITH (FORCE)')
    loads["after"] = loadavg()
    text, ok = report(args, solo_tx, solo_bulk, burst, concurrency, loads, solo_after)
    text += f"\n- message statuses at the end: {statuses}; django-q2 task timeouts: {timeouts}"
    ok = ok and timeouts == 0
    print("\n" + text + "\n", flush=True)
    RESULTS.mkdir(exist_ok=True)
    data = {
        "bench": "isolation", "stamp": stamp, "args": vars(args), "cores": os.cpu_count(),
        "send_concurrency": concurrency, "lane_workers": LANE_WORKERS,
        "goals": {"tx_p99_ms": GOAL_P99_MS, "bulk_share": GOAL_BULK_SHARE}, "passed": ok,
        "load_average": loads, "statuses": statuses, "task_timeouts": timeouts,
        "tx_alone": solo_tx, "bulk_alone": solo_bulk, "burst": burst,
        "bulk_alone_after": solo_after,
        "bulk_alone_rate": solo_rate(solo_bulk, solo_after),
    }
    (RESULTS / f"isolation-{stamp}.json").write_text(json.dumps(data, indent=1, default=str))
    (RESULTS / f"isolation-{stamp}.md").write_text(text + "\n")
    log(f"wrote bench/results/isolation-{stamp}.json and .md")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
