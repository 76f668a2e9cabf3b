"""End to end over SMTP: real qcluster processes -> our SMTP backend -> local aiosmtpd."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django_q.tasks import async_task

from notifications.delivery import message_id_for
from notifications.models import DeliveryAttempt
from notifications.services import notify, notify_many
from notifications.wakeups import DRAIN_TASK
from tests.e2e.conftest import outcome_of, wait_final
from tests.fakes.smtp import FakeSMTP

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True),
              pytest.mark.usefixtures("demo")]

ORDER = {"order_id": 1, "total": "$1", "items": [{"name": "Tea", "qty": 1}]}


def smtp_env(fake: FakeSMTP) -> dict[str, str]:
    return {
        # The project's batch SMTP backend (send_each); the crash and Redis tests use Django's.
        "EMAIL_BACKEND": "notifications.backends.smtp.SMTPBackend",
        "EMAIL_HOST": fake.host,
        "EMAIL_PORT": str(fake.port),
        "NOTIFY_BATCH_SIZE": "50",
        "Q_WORKERS_TRANSACTIONAL": "2",
    }


@pytest.fixture(scope="module")
def smtp_module(start_cluster: Any) -> Iterator[tuple[FakeSMTP, list[Any]]]:
    with FakeSMTP() as fake:
        # Two clusters serve the same lane, as two hosts would in production.
        clusters = [start_cluster("transactional", smtp_env(fake)) for _ in range(2)]
        yield fake, clusters


@pytest.fixture
def smtp(smtp_module: tuple[FakeSMTP, list[Any]]) -> FakeSMTP:
    fake, _ = smtp_module
    fake.reset()
    return fake


def test_smtp_outcomes_reach_their_final_status(smtp: FakeSMTP) -> None:
    smtp.script("greylisted@example.com", ["451"])
    smtp.script("unknown@example.com", ["550"])
    smtp.script("flaky@example.com", ["data:451", "data:451"])
    smtp.script("rejected@example.com", ["data:554"])
    addresses = ["ok@example.com", "greylisted@example.com", "unknown@example.com",
                 "flaky@example.com", "rejected@example.com"]
    messages = {a: notify(event="order.placed", to=a, data=ORDER) for a in addresses}

    final = wait_final([m.pk for m in messages.values()], timeout=60)

    outcome = outcome_of(final, messages)

    assert outcome("ok@example.com") == ("sent", 1, "")
    assert outcome("greylisted@example.com") == ("sent", 2, "")
    assert outcome("unknown@example.com") == ("dead", 1, "permanent_error")
    assert outcome("flaky@example.com") == ("sent", 3, "")
    assert outcome("rejected@example.com") == ("dead", 1, "permanent_error")
    assert "550" in final[messages["unknown@example.com"].pk].last_error
    received = smtp.count_by_message_id()
    for m in final.values():
        assert received[message_id_for(m.pk)] == (1 if m.status == "sent" else 0), m.to_email
    [email] = smtp.received_for("ok@example.com")
    assert email.subject == "Order 1 confirmed"
    assert email.message["X-Notification-Id"] == str(messages["ok@example.com"].pk)


def _cluster_of(pid: int, roots: set[int]) -> int | None:
    """Walk /proc parent links from a worker pid up to one of the cluster main pids."""
    while pid > 1:
        if pid in roots:
            return pid
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return None
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return None


def test_two_clusters_draining_one_lane_never_send_a_message_twice(
    smtp_module: tuple[FakeSMTP, list[Any]], smtp: FakeSMTP,
) -> None:
    _, clusters = smtp_module
    # Each email takes the server 5 ms, so drains overlap for seconds; extra wake-ups (a lost
    # one is harmless, a duplicate one too) make sure both clusters run drains at once.
    smtp.default_mode = "hang:0.005"
    results = notify_many([
        {"event": "order.placed", "to": f"c{n}@example.com", "data": ORDER} for n in range(2000)
    ])
    pks = [q.message.pk for q in results]
    for _ in range(6):
        async_task(DRAIN_TASK, "transactional", cluster="transactional")

    final = wait_final(pks, timeout=120)

    assert {m.status for m in final.values()} == {"sent"}
    assert {m.attempts for m in final.values()} == {1}
    delivered = smtp.count_delivered_by_message_id()
    assert sum(delivered[message_id_for(pk)] for pk in pks) == 2000
    assert all(delivered[message_id_for(pk)] == 1 for pk in pks)
    # Both clusters really took part: their worker processes each sent some of the messages.
    workers = DeliveryAttempt.objects.filter(message_id__in=pks).values_list("worker", flat=True)
    roots = {c.proc.pid for c in clusters}
    senders = {_cluster_of(int(w.rsplit(":", 1)[1]), roots) for w in set(workers)}
    assert senders == roots
