"""Flow control shared by real clusters: an outage mid-run (nobody claims while the breaker is
open, so each message spends at most one extra attempt, and all are sent after it recovers), and
a 429 that pauses every worker for its Retry-After."""

from __future__ import annotations

import os
import time
from collections import Counter
from typing import Any

import pytest

from notifications.delivery import message_id_for
from notifications.models import DeliveryAttempt
from notifications.services import notify_many
from tests.e2e.conftest import wait_final, wait_until
from tests.fakes.postmark import FakePostmark

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True),
              pytest.mark.usefixtures("demo")]

OUTAGE = 30.0
PAUSE = 5.0


def test_a_30_second_outage_costs_each_message_at_most_one_attempt(own_clusters: Any) -> None:
    with FakePostmark() as fake:
        fake.latency = 0.1
        env = {"EMAIL_BACKEND": "anymail.backends.postmark.EmailBackend",
               "ANYMAIL_POSTMARK_SERVER_TOKEN": fake.server_token,
               "ANYMAIL_POSTMARK_API_URL": fake.url, "NOTIFY_SEND_CONCURRENCY": "8",
               "NOTIFY_BATCH_SIZE": "50", "Q_WORKERS_BULK": "2",
               "NOTIFY_BREAKER_PAUSE_SECONDS": str(PAUSE)}
        for _ in range(2):  # two clusters, four workers, one breaker
            own_clusters("bulk", env)
        results = notify_many([{"event": "marketing.newsletter", "to": f"r{i}@example.com",
                                "data": {"headline": "h", "body": "b"}} for i in range(1500)])
        pks = [q.message.pk for q in results]

        wait_until(lambda: len(fake.accepted) >= 300, 60, "the run to get going")
        fake.set_global_mode("503")
        down_at = time.time()
        time.sleep(OUTAGE)
        fake.set_global_mode(None)
        up_at = time.time()
        final = wait_final(pks, timeout=120)

        assert {m.status for m in final.values()} == {"sent"}
        accepted = fake.count_accepted_by_message_id()
        assert [accepted[message_id_for(pk)] for pk in pks] == [1] * len(pks)
        failed = Counter(DeliveryAttempt.objects.filter(message_id__in=pks)
                         .exclude(outcome="sent").values_list("message_id", flat=True))
        assert failed, "the outage did hit sends in flight"
        assert max(failed.values()) == 1  # at most one extra attempt each
        assert max(m.attempts for m in final.values()) <= 2
        # Once the breaker opened, only the probes (one per pause) reached the provider.
        during = [r for r in fake.requests if down_at + 3 <= r.time < up_at]
        assert len(during) <= OUTAGE / PAUSE + 1, len(during)
        assert len(fake.requests) - len(pks) == sum(failed.values())


def test_a_429_with_retry_after_pauses_every_worker(own_clusters: Any) -> None:
    """One 429 with Retry-After: 2 seen by one of four workers: within REFRESH_SECONDS (plus
    the sends already in flight) nobody sends to the provider until the two seconds are up."""
    with FakePostmark() as fake:
        fake.latency = 0.05
        env = {"EMAIL_BACKEND": "anymail.backends.postmark.EmailBackend",
               "ANYMAIL_POSTMARK_SERVER_TOKEN": fake.server_token,
               "ANYMAIL_POSTMARK_API_URL": fake.url, "NOTIFY_SEND_CONCURRENCY": "4",
               "NOTIFY_BATCH_SIZE": "25", "Q_WORKERS_BULK": "2"}
        fake.script("r300@example.com", ["429:2"])
        clusters = [own_clusters("bulk", env) for _ in range(2)]
        results = notify_many([{"event": "marketing.newsletter", "to": f"r{i}@example.com",
                                "data": {"headline": "h", "body": "b"}} for i in range(800)])
        pks = [q.message.pk for q in results]

        final = wait_final(pks, timeout=120)

        assert {m.status for m in final.values()} == {"sent"}
        [throttled] = [r for r in fake.requests if r.status == 429]
        workers = set(DeliveryAttempt.objects.filter(message_id__in=pks)
                      .values_list("worker", flat=True))
        assert len(workers) >= 2  # another worker was sending too
        answered = throttled.time + fake.latency
        quiet = [r for r in fake.requests
                 if answered + 0.5 + 0.3 <= r.time < answered + 2 - 0.05]
        assert quiet == [], [(round(r.time - answered, 2), r.recipient) for r in quiet]
        assert any(r.time >= answered + 2 for r in fake.requests)  # and then they went on
        # The bulk lane's processes yield the CPU (NOTIFY_NICE_BULK, 10 by default).
        ours = os.getpriority(os.PRIO_PROCESS, 0)
        assert {os.getpriority(os.PRIO_PROCESS, c.proc.pid) for c in clusters} == {ours + 10}
