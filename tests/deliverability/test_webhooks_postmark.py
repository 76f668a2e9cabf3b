"""Postmark's tracking webhooks posted to Anymail's real view on a live server: each record
type's effect on the message, the suppression list and the stored events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from notifications.models import Bounce, Status, Suppression, SuppressionReason, TrackingEvent
from tests.deliverability.payloads.postmark import postmark
from tests.deliverability.payloads.server import (  # noqa: F401 (hooks_fixture: a fixture)
    Hooks,
    active,
    hooks_fixture,
    sent,
    unique,
)

AT = datetime(2025, 3, 14, 9, 26, 53, 589793, tzinfo=UTC)


def hook_for(message: Any, kind: Any, *, event_id: int | None = None,
             at: datetime = AT, **kw: Any) -> Any:
    """Postmark's `kind` record for `message`, as Postmark would post it."""
    return postmark(kind, notification_id=str(message.pk),
                    provider_id=message.provider_message_id, recipient=message.to_email,
                    event_id=event_id, at=at, **kw)


def test_it_marks_a_delivered_email_delivered_and_stores_the_event(hooks: Hooks) -> None:
    message = sent(provider_id=unique("pm-"))

    answer = hooks.post(hook_for(message, "Delivery"))

    assert answer.status == 200
    message.refresh_from_db()
    assert message.status == Status.DELIVERED
    [event] = TrackingEvent.objects.all()
    assert (event.esp, event.event_type, event.message_id, event.applied) == (
        "Postmark", "delivered", message.pk, True)
    assert (event.provider_message_id, event.recipient, event.lane) == (
        message.provider_message_id, "ann@example.com", "transactional")
    assert event.occurred_at == AT  # Postmark's 7-digit fraction, read to the microsecond
    assert event.raw["RecordType"] == "Delivery"
    assert active("ann@example.com") == {}


def test_a_hard_bounce_bounces_the_email_and_suppresses_the_address_for_all_mail(
    hooks: Hooks,
) -> None:
    message = sent(provider_id=unique("pm-"), to="Gone@Example.com")

    answer = hooks.post(hook_for(message, "HardBounce", event_id=4323372036854775807))

    assert answer.status == 200
    message.refresh_from_db()
    assert (message.status, message.bounce) == (Status.BOUNCED, Bounce.HARD)
    assert message.last_error.startswith("hard bounce: The server was unable to deliver")
    assert active("gone@example.com") == {"": SuppressionReason.HARD_BOUNCE}
    row = Suppression.objects.get(email="gone@example.com")
    assert (row.message_id, row.source) == (message.pk, "Postmark bounced (hard)")


def test_a_late_delivery_never_downgrades_a_bounce(hooks: Hooks) -> None:
    message = sent(provider_id=unique("pm-"))
    hooks.post(hook_for(message, "HardBounce", event_id=11))

    answer = hooks.post(hook_for(message, "Delivery", at=AT - timedelta(seconds=5)))

    assert answer.status == 200
    message.refresh_from_db()
    assert (message.status, message.bounce) == (Status.BOUNCED, Bounce.HARD)
    assert TrackingEvent.objects.count() == 2  # both kept as history


def test_a_soft_bounce_then_a_hard_one_is_hard_and_a_soft_one_after_stays_hard(
    hooks: Hooks,
) -> None:
    message = sent(provider_id=unique("pm-"))

    hooks.post(hook_for(message, "SoftBounce", event_id=21))
    message.refresh_from_db()
    assert (message.status, message.bounce) == (Status.BOUNCED, Bounce.SOFT)
    assert active("ann@example.com") == {}  # one soft bounce is below SOFT_BOUNCE_LIMIT

    hooks.post(hook_for(message, "HardBounce", event_id=22, at=AT + timedelta(minutes=1)))
    message.refresh_from_db()
    assert (message.status, message.bounce) == (Status.BOUNCED, Bounce.HARD)
    assert active("ann@example.com") == {"": SuppressionReason.HARD_BOUNCE}

    hooks.post(hook_for(message, "SoftBounce", event_id=23, at=AT + timedelta(minutes=2)))
    message.refresh_from_db()
    assert (message.status, message.bounce) == (Status.BOUNCED, Bounce.HARD)


def test_soft_bounces_suppress_the_address_only_at_the_limit(hooks: Hooks, settings: Any) -> None:
    settings.NOTIFY_DELIVERABILITY = {**settings.NOTIFY_DELIVERABILITY, "SOFT_BOUNCE_LIMIT": 3}
    messages = [sent(provider_id=unique("pm-"), to="full@example.com") for _ in range(3)]

    for n, message in enumerate(messages[:2]):
        hooks.post(hook_for(message, "SoftBounce", event_id=30 + n))
    assert active("full@example.com") == {}

    hooks.post(hook_for(messages[2], "SoftBounce", event_id=32))
    assert active("full@example.com") == {"": SuppressionReason.SOFT_BOUNCES}
    assert "3 soft bounces in 7 days" in Suppression.objects.get(email="full@example.com").note


def test_a_spam_complaint_marks_the_email_complained_and_suppresses_every_email(
    hooks: Hooks,
) -> None:
    message = sent(provider_id=unique("pm-"))
    hooks.post(hook_for(message, "Delivery"))

    answer = hooks.post(hook_for(message, "SpamComplaint", event_id=42))

    assert answer.status == 200
    message.refresh_from_db()
    assert message.status == Status.COMPLAINED
    assert active("ann@example.com") == {"": SuppressionReason.COMPLAINT}
    # A later bounce report of the same email does not take the complaint back.
    hooks.post(hook_for(message, "HardBounce", event_id=43))
    message.refresh_from_db()
    assert message.status == Status.COMPLAINED
    assert active("ann@example.com") == {"": SuppressionReason.COMPLAINT}


@pytest.mark.parametrize(("kind", "recorded_as"), [
    ("Open", "opened"), ("Click", "clicked"), ("Transient", "deferred")])
def test_opens_clicks_and_delays_are_recorded_without_moving_the_email(
    hooks: Hooks, kind: Any, recorded_as: str,
) -> None:
    message = sent(provider_id=unique("pm-"))

    answer = hooks.post(hook_for(message, kind, event_id=50 if kind == "Transient" else None))

    assert answer.status == 200
    message.refresh_from_db()
    assert (message.status, message.bounce) == (Status.SENT, "")
    [event] = TrackingEvent.objects.all()
    assert (event.event_type, event.message_id, event.applied) == (recorded_as, message.pk, True)
    assert active("ann@example.com") == {}


def test_an_unsubscribe_suppresses_the_address_for_the_emails_category_only(
    hooks: Hooks,
) -> None:
    message = sent(provider_id=unique("pm-"), event="marketing.newsletter")

    answer = hooks.post(hook_for(message, "Unsubscribe", event="marketing.newsletter"))

    assert answer.status == 200
    message.refresh_from_db()
    assert message.status == Status.SENT  # it was delivered; only the next ones stop
    assert active("ann@example.com") == {"newsletter": SuppressionReason.UNSUBSCRIBE}
