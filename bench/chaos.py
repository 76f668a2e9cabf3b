#!/usr/bin/env python
"""Proof under faults: the whole pipeline on PostgreSQL against a failing provider, with crashes.

    make chaos                                          # 5,000 messages, Redis broker
    .venv/bin/python bench/chaos.py --messages 1000 --no-redis

1. Recreates the PostgreSQL database `notify_chaos`, migrates it, seeds the demo event types.
2. With --redis (the default): starts a redis-server of its own on a free loopback port and
   points REDIS_URL (django-q2's broker) at it.
3. Starts the fake Postmark in its own process with the fault mix of tests/chaos.py (20% 503, 5%
   429 with Retry-After, 5% accepted-then-timeout, 2% connection resets, 10% slow answers) and
   a domain whose recipients are always refused (422).
4. Starts real clusters, two on the bulk lane and one on the transactional lane, with short
   retry and timeout settings that pass the system checks (tests/chaos.CHAOS_ENV), and queues
   N events with notify_many: newsletters (bulk) and order confirmations (transactional), 2% of
   them to the refused domain.
5. As the provider's request count grows: SIGKILLs the transactional cluster's busiest sending
   worker, then a bulk cluster's, then a whole bulk cluster (restarted 3 s later); takes the
   provider down (POST /_fake/mode 503) for 3 s; restarts Redis (SIGKILL, 2 s, start again).
   The sweepers run on their own schedule (every minute).
6. Waits (bounded) until every message is sent or dead, stops the clusters, reads the
   provider's request log, and audits messages, attempt rows and requests against each other
   (tests/chaos.audit: the checks are listed there). Prints a table, writes a JSON summary to
   bench/results/, exits non-zero if any check failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import delivery as bench  # noqa: E402
from bench import provider  # noqa: E402
from bench.pg import free_port  # noqa: E402
from tests import chaos  # noqa: E402

PY = sys.executable
REDIS_SERVER = "/usr/bin/redis-server"


def log(msg: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--messages", "-n", type=int, default=5000, help="events to queue (5000)")
    p.add_argument("--seed", type=int, default=1, help="seed of the events and the fault mix (1)")
    p.add_argument("--faults", default=chaos.faults_arg(),
                   help=f"the fake's fault mix ({chaos.faults_arg()})")
    p.add_argument("--latency", type=float, default=0.02, help="provider round trip, s (0.02)")
    p.add_argument("--redis", action=argparse.BooleanOptionalAction, default=True,
                   help="Redis broker on a redis-server of our own, restarted mid-run (on)")
    p.add_argument("--bulk-workers", type=int, default=2, help="Q_WORKERS_BULK per cluster (2)")
    p.add_argument("--transactional-workers", type=int, default=2,
                   help="Q_WORKERS_TRANSACTIONAL (2)")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds for every message to be sent or dead (120 + messages / 10:\n"
                        "a 429 holds every worker's sends for its Retry-After, so 5%% of\n"
                        "requests answered 429:1 cap the provider near 20 requests/s)")
    p.add_argument("--db-name", default="notify_chaos")
    p.add_argument("--keep-db", action="store_true", help="do not drop the database at the end")
    args = p.parse_args(argv)
    if args.timeout is None:
        args.timeout = 120 + args.messages / 10
    return args


# --- helper processes -----------------------------------------------------------------------------


class Redis:
    """A redis-server of our own (no persistence): what a restart loses is gone."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no"], stdout=out, stderr=subprocess.STDOUT)
        import redis

        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(redis.ConnectionError):
                client.ping()
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start; see {self.log_path}")
            time.sleep(0.05)

    def crash(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None:
            bench.stop_process(self.proc, 5)


class Fake(provider.Fake):
    """The fake Postmark with the fault mix, in its own process."""

    def __init__(self, args: argparse.Namespace, log_path: Path) -> None:
        super().__init__(args.latency, log_path, token=chaos.TOKEN, extra=(
            "--faults", args.faults, "--seed", str(args.seed),
            "--permanent-domain", chaos.PERMANENT_DOMAIN))

    def _get(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=30) as answer:
            return json.loads(answer.read())

    def stats(self) -> dict[str, Any]:
        return self._get("_fake/stats")

    def in_flight_ports(self) -> list[int]:
        return self.stats()["in_flight_ports"]

    def log(self) -> list[dict[str, Any]]:
        return self._get("_fake/log")

    def set_mode(self, mode: str | None) -> None:
        request = urllib.request.Request(
            f"{self.url}_fake/mode", data=json.dumps({"mode": mode}).encode(), method="POST",
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            if json.loads(answer.read()) != {"mode": mode}:
                raise RuntimeError(f"the fake did not take mode {mode!r}")


# --- the run --------------------------------------------------------------------------------------


@dataclass
class Step:
    """A fault injected once the provider has seen `at` x messages requests."""

    at: float
    name: str
    action: Callable[[], None]
    done_at: float | None = None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    work = Path(os.environ.get("BENCH_WORK", f"/tmp/chaos-{stamp}"))
    work.mkdir(parents=True, exist_ok=True)
    log(f"work dir {work}")
    bench.recreate_db(args.db_name)
    cleanup: list[Callable[[], None]] = []
    try:
        bench.manage(args, "project.settings", "migrate", "--noinput",
                     log_path=work / "setup.log")
        bench.manage(args, "project.settings", "seed_demo", log_path=work / "setup.log")
        return run(args, work, stamp, cleanup)
    finally:
        for stop in reversed(cleanup):
            with contextlib.suppress(Exception):
                stop()
        if not args.keep_db:
            bench.drop_db(args.db_name)


def run(args: argparse.Namespace, work: Path, stamp: str,
        cleanup: list[Callable[[], None]]) -> int:
    env = bench.base_env(args)
    redis = None
    if args.redis:
        redis = Redis(work / "redis.log")
        cleanup.append(redis.stop)
        env["REDIS_URL"] = redis.url
        log(f"redis-server on {redis.url}")
    fake = Fake(args, work / "fake.log")
    cleanup.append(fake.stop)
    log(f"fake Postmark on {fake.url}: faults {args.faults}, refusing @{chaos.PERMANENT_DOMAIN}")
    os.environ.update(env)
    import django

    django.setup()
    from django.db import connection

    cluster_env = {**env, **chaos.postmark_env(fake.url),
                   "Q_WORKERS_BULK": str(args.bulk_workers),
                   "Q_WORKERS_TRANSACTIONAL": str(args.transactional_workers)}
    workers = {"bulk": args.bulk_workers, "transactional": args.transactional_workers}
    clusters: dict[str, bench.Cluster] = {}

    def start(name: str, lane: str) -> None:
        cluster = bench.Cluster({**cluster_env, "Q_CLUSTER_NAME": lane},
                                work / f"qcluster-{name}-{time.monotonic_ns()}.log")
        cleanup.append(cluster.stop)
        cluster.wait_running(workers[lane])
        clusters[name] = cluster

    for name, lane in (("bulk-1", "bulk"), ("bulk-2", "bulk"),
                       ("transactional", "transactional")):
        start(name, lane)
    log("clusters up: bulk x2, transactional x1; queueing")
    t0 = time.monotonic()
    pks = chaos.enqueue(chaos.chaos_events(args.messages, seed=args.seed))
    log(f"queued {len(pks):,} events in {time.monotonic() - t0:.1f}s")

    kills: list[chaos.Kill] = []

    def killed(kill: chaos.Kill) -> None:
        kills.append(kill)
        log(f"  killed {kill.what}: {kill.in_flight} requests in flight at the provider, "
            f"{kill.connections} connections")

    def kill_worker(name: str) -> None:
        killed(chaos.kill_sending_worker(clusters[name].proc.pid, fake.port, name,
                                         fake.in_flight_ports))

    def kill_and_restart(name: str) -> None:
        lane = name.split("-")[0]
        cluster = clusters.pop(name)
        killed(chaos.kill_cluster(cluster.proc.pid, fake.port, name, workers[lane],
                                  fake.in_flight_ports))
        cluster.stop()  # reaps it
        time.sleep(3)
        start(name, lane)

    outage_window: list[float] = []

    def outage() -> None:
        fake.set_mode("503")
        outage_window.append(time.time())
        time.sleep(3)
        # A request read up to a round trip before the mode is cleared may get its mode after.
        outage_window.append(time.time() - 0.5)
        fake.set_mode(None)

    def restart_redis() -> None:
        assert redis is not None
        redis.crash()
        time.sleep(2)
        redis.start()

    steps = [
        Step(0.05, "SIGKILL a sending worker of the transactional cluster",
             lambda: kill_worker("transactional")),
        Step(0.15, "provider outage: every request answered 503 for 3 s", outage),
        Step(0.30, "SIGKILL a sending worker of bulk-1", lambda: kill_worker("bulk-1")),
        Step(0.45, "SIGKILL the whole bulk-2 cluster, restart it after 3 s",
             lambda: kill_and_restart("bulk-2")),
    ]
    if redis is not None:
        steps.append(Step(0.60, "SIGKILL redis-server, start it again after 2 s",
                          restart_redis))

    last_report = [time.monotonic()]

    def tick(left: int) -> None:
        requests = fake.stats()["requests"]
        for step in steps:
            if step.done_at is None and requests >= step.at * args.messages:
                log(f"{step.name} ({requests:,} requests so far, {left:,} messages left)")
                step.action()
                step.done_at = time.monotonic() - t0
        if time.monotonic() - last_report[0] > 10:
            last_report[0] = time.monotonic()
            log(f"{args.messages - left:,} / {args.messages:,} sent or dead, "
                f"{requests:,} provider requests")

    waited, left = chaos.wait_settled(pks, args.timeout, tick)
    seconds = time.monotonic() - t0
    log(f"settled: {left} left after {seconds:.1f}s; stopping the clusters")
    for cluster in list(clusters.values()):
        cluster.stop()
    provider_log = fake.log()
    cluster_logs = "".join(p.read_text(errors="replace") for p in work.glob("qcluster-*.log"))
    result = chaos.audit(pks, provider_log, kills=kills,
                         concurrency=int(chaos.CHAOS_ENV["NOTIFY_SEND_CONCURRENCY"]),
                         batch_size=int(chaos.CHAOS_ENV["NOTIFY_BATCH_SIZE"]))
    for step in steps:
        if step.done_at is None:
            result.failures.append(f"planned fault never injected: {step.name}")
    if left:
        result.failures.append(f"{left} messages neither sent nor dead after {args.timeout:.0f}s")
    during_outage = [e for e in provider_log
                     if outage_window and outage_window[0] <= e["time"] <= outage_window[1]]
    if outage_window and not during_outage:
        result.failures.append("the provider outage met no request")
    if any(e["mode"] != "503" for e in during_outage):
        result.failures.append("the provider answered other than 503 during the outage")
    task_timeouts = cluster_logs.count("exceeded maximum timeout")
    if task_timeouts:
        result.failures.append(f"{task_timeouts} drain tasks hit the django-q2 timeout")

    extra = {
        "database": f"PostgreSQL {connection.pg_version // 10000}" if connection.vendor ==
        "postgresql" else connection.vendor,
        "broker": "Redis (restarted mid-run)" if redis else "ORM",
        "clusters": f"bulk x2 ({args.bulk_workers} workers each), transactional x1 "
                    f"({args.transactional_workers} workers)",
        "fault_mix": args.faults,
        "seconds_to_settle": seconds,
        "time_bound_seconds": args.timeout,
        "injected": "; ".join(f"{s.name} at {s.done_at:.1f}s" if s.done_at is not None
                              else f"{s.name}: NOT DONE" for s in steps),
        "requests_during_outage": len(during_outage),
        "task_timeouts": task_timeouts,
        "worker_reincarnations": cluster_logs.count("reincarnated worker"),
    }
    text = (f"Chaos run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
            f"{args.messages:,} messages, seed {args.seed}\n\n" + chaos.table(result, extra))
    print("\n" + text + "\n", flush=True)
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    summary = {"stamp": stamp, "args": {k: v for k, v in vars(args).items()},
               **extra, **result.as_dict()}
    path = results / f"chaos-{stamp}.json"
    path.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    log(f"summary written to {path}")
    return 0 if result.ok else 1


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    raise SystemExit(main())
