"""A worker killed mid-send: its lease expires and the scheduled sweeper gets the message out."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from notifications.delivery import message_id_for
from notifications.models import Message
from notifications.services import notify
from tests.e2e.conftest import wait_final, wait_until
from tests.fakes.smtp import FakeSMTP

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True),
              pytest.mark.usefixtures("demo")]


def test_a_message_whose_worker_was_killed_mid_send_is_sent_by_the_next_cluster(
    start_cluster: Any,
) -> None:
    with FakeSMTP() as smtp:
        # Short timeouts that still agree (notifications/checks.py refuses a lease shorter than
        # the task timeout, and a budget plus send timeout too close to it).
        env = {
            "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "EMAIL_HOST": smtp.host, "EMAIL_PORT": str(smtp.port),
            "Q_TIMEOUT": "8", "NOTIFY_LEASE_SECONDS": "9",
            "NOTIFY_DRAIN_BUDGET_SECONDS": "1", "EMAIL_TIMEOUT": "5",
        }
        # The server accepts the data then stalls; the worker waits (5 s timeout) until killed.
        smtp.script("ann@example.com", ["hang:60"])
        doomed = start_cluster("transactional", env)
        message = notify(event="order.placed", to="ann@example.com",
                         data={"order_id": 1, "total": "$1", "items": [{"name": "T", "qty": 1}]})
        wait_until(lambda: smtp.attempts_for("ann@example.com"), 30, "the first send to start")
        assert Message.objects.get(pk=message.pk).status == "processing"

        doomed.kill()  # SIGKILL to the whole cluster: no cleanup, the lease stays behind
        lease_until = Message.objects.get(pk=message.pk).lease_until
        # The next cluster's scheduler sweeps when it starts, then every minute: start it once
        # the lease has run out so its first sweep finds the message.
        wait_until(lambda: timezone.now() > lease_until, 30, "the lease to expire")
        start_cluster("transactional", env)

        final = wait_final([message.pk], timeout=90)[message.pk]

        assert (final.status, final.attempts) == ("sent", 2)
        outcomes = list(final.delivery_attempts.values_list("outcome", flat=True))
        assert outcomes == ["lease_expired", "sent"]
        assert smtp.count_by_message_id()[message_id_for(message.pk)] == 1
