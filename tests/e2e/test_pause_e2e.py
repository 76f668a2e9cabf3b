"""Pausing a lane stops a real cluster's drains within seconds, mid-burst, and resuming sends the
rest: nothing lost, nothing sent twice."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from notifications.delivery import message_id_for
from notifications.lanes import lane_pause, lane_resume
from notifications.models import Message, Status
from notifications.services import notify_many
from tests.e2e.conftest import wait_final, wait_until
from tests.fakes.postmark import FakePostmark

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True),
              pytest.mark.usefixtures("demo")]


def test_a_paused_lane_stops_within_seconds_and_resumes_without_loss(own_clusters: Any) -> None:
    with FakePostmark() as fake:
        fake.latency = 0.05
        own_clusters("bulk", {"EMAIL_BACKEND": "anymail.backends.postmark.EmailBackend",
                              "ANYMAIL_POSTMARK_SERVER_TOKEN": fake.server_token,
                              "ANYMAIL_POSTMARK_API_URL": fake.url,
                              "NOTIFY_SEND_CONCURRENCY": "4", "NOTIFY_BATCH_SIZE": "20"})
        results = notify_many([{"event": "marketing.newsletter", "to": f"r{i}@example.com",
                                "data": {"headline": "h", "body": "b"}} for i in range(800)])
        pks = [q.message.pk for q in results]
        wait_until(lambda: len(fake.accepted) >= 40, 60, "the drain to get going")

        lane_pause(lane="bulk", user="e2e", reason="testing")
        paused_at = time.monotonic()
        time.sleep(3.0)  # the pause cache (1 s) plus the sends in flight
        stopped = len(fake.requests)
        time.sleep(3.0)

        assert len(fake.requests) == stopped, "sends went on after the pause took effect"
        waiting = Message.objects.filter(pk__in=pks, status__in=[Status.PENDING, Status.RETRY])
        assert waiting.count() > 400  # most of the burst is still waiting, untouched
        assert not Message.objects.filter(pk__in=pks, status=Status.PROCESSING).exists()
        assert max(m.attempts for m in waiting) == 0  # handed back with the attempt refunded
        assert time.monotonic() - paused_at < 10

        lane_resume(lane="bulk", user="e2e")
        final = wait_final(pks, timeout=90)

        assert {m.status for m in final.values()} == {"sent"}
        accepted = Counter(fake.count_accepted_by_message_id())
        assert [accepted[message_id_for(pk)] for pk in pks] == [1] * len(pks)
