"""Proof under faults, small: `make chaos` (bench/chaos.py) at 400 messages inside the suite.

Real clusters (two bulk workers, one transactional) send through Anymail's Postmark backend to
the fake Postmark answering with the chaos fault mix (20% 503, 5% 429 with Retry-After, 5%
accepted-then-timeout, 2% connection resets, 10% slow answers) and refusing one domain for good;
a bulk worker is killed with SIGKILL mid-send. The audit (tests/chaos.py) then checks every
message, attempt row and provider request against each other.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.chaos import (
    CHAOS_ENV,
    FAULTS,
    PERMANENT_DOMAIN,
    TOKEN,
    audit,
    bring_sweeps_forward,
    chaos_events,
    enqueue,
    kill_sending_worker,
    postmark_env,
    table,
    wait_settled,
)
from tests.e2e.conftest import wait_until
from tests.fakes.postmark import FakePostmark

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True),
              pytest.mark.usefixtures("demo")]

MESSAGES = 400
SETTLE_SECONDS = 90


def test_under_faults_and_a_killed_worker_every_message_is_sent_or_dead_and_accounted_for(
    own_clusters: Any,
) -> None:
    with FakePostmark(server_token=TOKEN) as fake:
        fake.latency = 0.02
        fake.set_faults(FAULTS, seed=1)
        fake.permanent_domains = {PERMANENT_DOMAIN}
        env = postmark_env(fake.url, Q_WORKERS_BULK="2", Q_WORKERS_TRANSACTIONAL="1")
        bulk = own_clusters("bulk", env)
        own_clusters("transactional", env)
        started = time.monotonic()
        pks = enqueue(chaos_events(MESSAGES, seed=1))

        wait_until(lambda: len(fake.requests) >= MESSAGES // 4, 60, "a quarter to go out")
        kill = kill_sending_worker(bulk.proc.pid, fake.port, "bulk", fake.in_flight_ports)
        # The killed drain's messages wait for their lease, then for the sweeper: make its
        # schedule due once the leases have expired (and again every 5 s), so the clusters'
        # schedulers (every 30 s) need not wait out NOTIFY_SWEEP_MINUTES.
        leases_out = kill.at + float(CHAOS_ENV["NOTIFY_LEASE_SECONDS"]) + 0.5
        nudged = [0.0]

        def tick(left: int) -> None:
            if time.time() > max(leases_out, nudged[0] + 5):
                nudged[0] = time.time()
                bring_sweeps_forward()

        _, left = wait_settled(pks, SETTLE_SECONDS, tick)
        seconds = time.monotonic() - started
        result = audit(pks, fake.log(), kills=[kill],
                       concurrency=int(CHAOS_ENV["NOTIFY_SEND_CONCURRENCY"]),
                       batch_size=int(CHAOS_ENV["NOTIFY_BATCH_SIZE"]))

    report = table(result, {"seconds_to_settle": seconds})
    print("\n" + report)
    assert left == 0, f"{left} messages neither sent nor dead after {SETTLE_SECONDS}s\n{report}"
    assert result.ok, report
    # The plan did happen: faults, a permanent refusal, a kill that cost a lease.
    figures = result.figures
    assert kill.in_flight >= 1 and figures["lease_expired"] >= 1
    assert figures["statuses"]["sent"] >= MESSAGES * 0.9
