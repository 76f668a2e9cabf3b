"""The reputation guard end to end: a bulk send through the real drain, hard bounces through the
tracking receiver as Anymail hands them over, the minute check, and the drains afterwards."""

from __future__ import annotations

from typing import Any

import pytest
from anymail.signals import AnymailTrackingEvent
from django.utils import timezone

from dlq.tasks import minute_check
from notifications.delivery import drain_lane
from notifications.models import AuditAction, AuditEntry, LaneMinute, LaneState, Message, Status
from notifications.services import notify
from notifications.tracking import record_event

pytestmark = pytest.mark.usefixtures("demo", "no_wakeups")

NEWSLETTER = {"headline": "Spring", "body": "News"}
ORDER = {"order_id": 7, "total": "$5", "items": [{"name": "Tea", "qty": 1}]}


@pytest.fixture
def guard_settings(settings: Any) -> Any:
    settings.NOTIFY_DELIVERABILITY = {
        **settings.NOTIFY_DELIVERABILITY, "WINDOW_HOURS": 24, "MIN_VOLUME": 20,
        "BOUNCE_RATE": 0.04, "COMPLAINT_RATE": 0.0008}
    settings.NOTIFY_ALERTS = {
        **settings.NOTIFY_ALERTS, "DLQ_SIZE": 0, "OLDEST_DUE_SECONDS": 0, "HEARTBEAT_SECONDS": 0,
        "EMAILS": ["ops@example.com"], "WEBHOOK_URL": ""}
    return settings


def hard_bounce(message: Message, n: int) -> None:
    """What Anymail's Postmark tracking view sends the receiver for a hard bounce."""
    record_event("Postmark", AnymailTrackingEvent(
        event_type="bounced", timestamp=timezone.now(), event_id=f"bounce-{n}",
        esp_event={"Type": "HardBounce", "RecordType": "Bounce"},
        metadata={"notification_id": str(message.pk)}, recipient=message.to_email,
        description="The address does not exist."))


@pytest.mark.usefixtures("guard_settings")
def test_bounces_from_the_webhooks_pause_bulk_and_transactional_keeps_sending(
    outbox: list[Any],
) -> None:
    newsletter = [notify(event="marketing.newsletter", to=f"reader{n}@example.com",
                         data=NEWSLETTER) for n in range(20)]
    assert drain_lane("bulk", budget=5.0).sent == 20
    assert LaneMinute.objects.get(lane="bulk").sent == 20
    for n, message in enumerate(newsletter[:2]):
        hard_bounce(message, n)
    hard_bounce(newsletter[0], 0)  # the ESP retried the webhook: one bounce, not two
    assert Message.objects.filter(status=Status.BOUNCED).count() == 2

    minute_check()

    state = LaneState.objects.get(lane="bulk")
    reason = "bounce rate 10.0% > 4.0% over 24 h (20 sent)"
    assert (state.paused, state.paused_by, state.pause_reason) == (
        True, "reputation guard", reason)
    assert AuditEntry.objects.get(action=AuditAction.PAUSE).reason == reason
    alerts = [m for m in outbox if m.subject.startswith("[notifications]")]
    assert [m.subject for m in alerts] == ["[notifications] ALERT reputation:bulk:bounces"]
    assert "the lane is paused" in alerts[0].body

    more = notify(event="marketing.newsletter", to="late@example.com", data=NEWSLETTER)
    receipt = notify(event="order.placed", to="buyer@example.com", data=ORDER)
    before = len(outbox)

    bulk = drain_lane("bulk", budget=1.0)
    transactional = drain_lane("transactional", budget=5.0)

    assert (bulk.sent, bulk.paused) == (0, True)
    assert transactional.sent == 1
    assert [m.to for m in outbox[before:]] == [["buyer@example.com"]]
    assert Message.objects.get(pk=more.pk).status == Status.PENDING
    assert Message.objects.get(pk=receipt.pk).status == Status.SENT
