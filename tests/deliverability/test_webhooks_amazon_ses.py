"""Amazon SES events published through SNS, posted to Anymail's real view on a live server:
each event's effect, metadata read back from the X-Metadata header Anymail's SES backend sent,
and SNS's own checks (its 401 challenge, its type and id headers)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from notifications.models import Bounce, Status, Suppression, SuppressionReason, TrackingEvent
from tests.deliverability.payloads.amazon_ses import amazon_ses, ses_event, sns
from tests.deliverability.payloads.server import (  # noqa: F401 (hooks_fixture: a fixture)
    Hooks,
    active,
    hooks_fixture,
    sent,
    unique,
)

AT = datetime(2025, 3, 14, 9, 26, 53, 669000, tzinfo=UTC)


def ses_id() -> str:
    """What SES's SendEmail answers as MessageId (and Anymail stores)."""
    return f"0102018e3b5c{unique('')}-3f0a7c4e-7b1d-4a8e-9c2f-5e6d7c8b9a01-000000"


def hook_for(message: Any, kind: Any, *, event_id: str | None = None, **kw: Any) -> Any:
    """SES's `kind` event for `message`, through SNS with a fresh MessageId."""
    return amazon_ses(kind, notification_id=str(message.pk),
                      provider_id=message.provider_message_id, recipient=message.to_email,
                      event_id=event_id or str(uuid.uuid4()), at=AT, **kw)


def test_a_delivery_marks_the_email_delivered(hooks: Hooks) -> None:
    message = sent(provider_id=ses_id())
    event_id = str(uuid.uuid4())

    answer = hooks.post(hook_for(message, "Delivery", event_id=event_id))

    assert answer.status == 200
    message.refresh_from_db()
    assert message.status == Status.DELIVERED
    [event] = TrackingEvent.objects.all()
    assert (event.esp, event.event_type, event.message_id, event.notification_id) == (
        "Amazon SES", "delivered", message.pk, str(message.pk))
    assert event.mta_response == "250 2.6.0 Message received"
    assert event.occurred_at == AT  # SNS's Timestamp


def test_a_permanent_bounce_is_hard_and_suppresses_the_address(hooks: Hooks) -> None:
    message = sent(provider_id=ses_id())

    answer = hooks.post(hook_for(message, "Bounce-Permanent"))

    assert answer.status == 200
    message.refresh_from_db()
    assert (message.status, message.bounce) == (Status.BOUNCED, Bounce.HARD)
    assert active("ann@example.com") == {"": SuppressionReason.HARD_BOUNCE}


def test_a_transient_bounce_is_soft_and_a_permanent_one_after_it_hard(hooks: Hooks) -> None:
    message = sent(provider_id=ses_id())

    hooks.post(hook_for(message, "Bounce-Transient"))
    message.refresh_from_db()
    assert (message.status, message.bounce) == (Status.BOUNCED, Bounce.SOFT)
    assert active("ann@example.com") == {}

    hooks.post(hook_for(message, "Bounce-Permanent"))
    message.refresh_from_db()
    assert (message.status, message.bounce) == (Status.BOUNCED, Bounce.HARD)
    assert active("ann@example.com") == {"": SuppressionReason.HARD_BOUNCE}


def test_a_complaint_marks_the_email_complained_and_suppresses_every_email(
    hooks: Hooks,
) -> None:
    message = sent(provider_id=ses_id(), event="marketing.newsletter")
    hooks.post(hook_for(message, "Delivery", event="marketing.newsletter"))

    answer = hooks.post(hook_for(message, "Complaint", event="marketing.newsletter"))

    assert answer.status == 200
    message.refresh_from_db()
    assert message.status == Status.COMPLAINED
    assert active("ann@example.com") == {"": SuppressionReason.COMPLAINT}


def test_an_open_is_recorded_only(hooks: Hooks) -> None:
    message = sent(provider_id=ses_id())

    assert hooks.post(hook_for(message, "Open")).status == 200

    message.refresh_from_db()
    assert message.status == Status.SENT
    assert TrackingEvent.objects.get().event_type == "opened"


def test_it_matches_by_the_ses_message_id_when_the_headers_carry_no_metadata(
    hooks: Hooks,
) -> None:
    message = sent(provider_id=ses_id())
    hook = amazon_ses("Bounce-Permanent", notification_id=None,
                      provider_id=message.provider_message_id, recipient=message.to_email,
                      event_id=str(uuid.uuid4()), at=AT)

    assert hooks.post(hook).status == 200

    message.refresh_from_db()
    assert (message.status, message.bounce) == (Status.BOUNCED, Bounce.HARD)
    assert TrackingEvent.objects.get().notification_id == ""


def test_a_notification_sns_delivers_twice_is_stored_once(hooks: Hooks) -> None:
    message = sent(provider_id=ses_id())
    hook = hook_for(message, "Bounce-Permanent", event_id=str(uuid.uuid4()))

    assert [hooks.post(hook).status for _ in range(2)] == [200, 200]

    assert TrackingEvent.objects.count() == 1
    message.refresh_from_db()
    assert message.bounce == Bounce.HARD


def test_snss_topic_validation_notice_is_accepted_and_stores_nothing(hooks: Hooks) -> None:
    notice = sns("Successfully validated SNS topic for Amazon SES event publishing.",
                 event_id=str(uuid.uuid4()), at=AT)

    assert hooks.post(notice).status == 200

    assert TrackingEvent.objects.count() == 0


def test_without_basic_auth_sns_gets_the_401_challenge_and_nothing_is_stored(
    hooks: Hooks,
) -> None:
    # SNS sends credentials only after a 401 with WWW-Authenticate, so Anymail answers that.
    message = sent(provider_id=ses_id())

    answer = hooks.post(hook_for(message, "Bounce-Permanent"), auth=None)

    assert answer.status == 401
    assert TrackingEvent.objects.count() == 0
    assert Suppression.objects.count() == 0


@pytest.mark.parametrize("auth", ["hook:wrong", "hook:"])
def test_wrong_basic_auth_is_refused_and_nothing_is_stored(hooks: Hooks, auth: str) -> None:
    message = sent(provider_id=ses_id())

    answer = hooks.post(hook_for(message, "Complaint"), auth=auth)

    assert answer.status == 400
    assert TrackingEvent.objects.count() == 0
    message.refresh_from_db()
    assert message.status == Status.SENT


@pytest.mark.parametrize("header", ["x-amz-sns-message-type", "x-amz-sns-message-id"])
def test_sns_headers_that_disagree_with_the_body_are_refused(hooks: Hooks, header: str) -> None:
    message = sent(provider_id=ses_id())
    hook = hook_for(message, "Complaint")
    hook.headers[header] = "SubscriptionConfirmation" if header.endswith("type") else "other"

    answer = hooks.post(hook)

    assert answer.status == 400
    assert TrackingEvent.objects.count() == 0


def test_an_ses_event_missing_its_recipients_list_is_a_client_error(hooks: Hooks) -> None:
    message = sent(provider_id=ses_id())
    event = ses_event("Bounce-Permanent", notification_id=str(message.pk),
                      provider_id=message.provider_message_id, recipient=message.to_email,
                      at=AT)
    del event["bounce"]["bouncedRecipients"]

    answer = hooks.post(sns(json.dumps(event), event_id=str(uuid.uuid4()), at=AT))

    assert answer.status == 400
    assert TrackingEvent.objects.count() == 0
