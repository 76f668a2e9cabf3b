"""End to end: real qcluster processes send through Anymail's Postmark backend to the fake
Postmark; the bounce and complaint webhooks Postmark would post for those emails go to
Anymail's real view on the live server; the address is suppressed before the next send.

The webhook is built from what the fake received (the MessageID it answered, the Metadata the
backend sent), as Postmark builds its own.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from notifications.lanes import lane_pause, lane_resume
from notifications.models import Bounce, Message, Status, Suppression, SuppressionReason
from notifications.services import notify
from tests.deliverability.payloads import post
from tests.deliverability.payloads.postmark import postmark
from tests.e2e.conftest import wait_final, wait_until
from tests.fakes.postmark import FakePostmark

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True),
              pytest.mark.usefixtures("demo")]

SECRET = "hook:e2e-secret"
DATA = {
    "order.placed": {"order_id": 1, "total": "$1", "items": [{"name": "Tea", "qty": 1}]},
    "user.registered": {"username": "ann"},
    "password.reset": {"reset_url": "https://example.com/r/1"},
    "marketing.newsletter": {"headline": "News", "body": "Hello"},
}


@pytest.fixture
def fake(postmark_module: FakePostmark, live_server: Any, settings: Any) -> FakePostmark:
    """The module's fake Postmark, emptied; webhooks accepted by the live server."""
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": SECRET}
    postmark_module.reset()
    return postmark_module


def send(event: str, to: str) -> Message:
    return notify(event=event, to=to, data=DATA[event])


def webhook(base_url: str, fake: FakePostmark, kind: Any, address: str, event_id: int) -> None:
    """Post Postmark's `kind` webhook for the one email the fake accepted for `address`."""
    [received] = fake.accepted_for(address)
    hook = postmark(kind, notification_id=received.data["Metadata"]["notification_id"],
                    provider_id=received.postmark_message_id or "", recipient=address,
                    event_id=event_id, at=datetime.now(UTC),
                    event=received.data["Metadata"]["notify_event"])
    answer = post(base_url, hook, auth=SECRET)
    assert answer.status == 200, answer


def sent_through(fake: FakePostmark, message: Message) -> Message:
    """`message` once the cluster sent it, checked against what the fake accepted."""
    message = wait_final([message.pk], timeout=20)[message.pk]
    assert message.status == Status.SENT, message.last_error
    [received] = fake.accepted_for(message.to_email)
    assert message.provider_message_id == received.postmark_message_id
    return message


def barrier(fake: FakePostmark) -> None:
    """Send one more email and wait for it: whatever the clusters were going to send before it
    has reached the fake by then."""
    sent_through(fake, send("user.registered", f"barrier-{time.monotonic_ns()}@example.com"))


def test_a_hard_bounce_suppresses_the_address_before_the_next_send(
    fake: FakePostmark, live_server: Any,
) -> None:
    first = sent_through(fake, send("order.placed", "gone@example.com"))

    webhook(live_server.url, fake, "HardBounce", "gone@example.com", event_id=5001)

    first.refresh_from_db()
    assert (first.status, first.bounce) == (Status.BOUNCED, Bounce.HARD)
    assert Suppression.objects.get(email="gone@example.com").reason == (
        SuppressionReason.HARD_BOUNCE)

    second = send("user.registered", "gone@example.com")
    assert second.status == Status.SUPPRESSED
    barrier(fake)
    assert len(fake.requests_for("gone@example.com")) == 1


def test_a_complaint_suppresses_every_kind_of_email_even_one_already_queued(
    fake: FakePostmark, live_server: Any,
) -> None:
    first = sent_through(fake, send("order.placed", "angry@example.com"))
    # A newsletter queued before the complaint, held by a paused bulk lane (the pause reaches
    # the running cluster within its 1 s cache).
    lane_pause(lane="bulk", user="e2e", reason="hold the newsletter")
    time.sleep(1.5)
    queued = send("marketing.newsletter", "angry@example.com")
    time.sleep(0.5)  # the bulk cluster was woken for it, and must have left it alone
    assert Message.objects.get(pk=queued.pk).status == Status.PENDING

    try:
        webhook(live_server.url, fake, "SpamComplaint", "angry@example.com", event_id=5002)
    finally:
        lane_resume(lane="bulk", user="e2e")

    first.refresh_from_db()
    assert first.status == Status.COMPLAINED
    # The queued newsletter is stopped when the bulk drain claims it; a new email of another
    # event type, transactional this time, at ingest.
    wait_until(lambda: Message.objects.get(pk=queued.pk).status == Status.SUPPRESSED, 20,
               "the bulk drain to suppress the queued newsletter")
    later = send("password.reset", "angry@example.com")
    assert later.status == Status.SUPPRESSED
    barrier(fake)
    assert len(fake.requests_for("angry@example.com")) == 1
    complaint = Suppression.objects.get(email="angry@example.com")
    assert complaint.reason == SuppressionReason.COMPLAINT
    assert Message.objects.get(pk=queued.pk).suppressed_by_id == complaint.pk
