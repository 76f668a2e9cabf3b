"""Mailgun's signed webhooks posted to Anymail's real view on a live server: each event's
effect, its signature and basic auth checked before anything is stored."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from notifications.models import Bounce, Status, Suppression, SuppressionReason, TrackingEvent
from tests.deliverability.payloads.mailgun import mailgun
from tests.deliverability.payloads.server import (  # noqa: F401 (hooks_fixture: a fixture)
    MAILGUN_SIGNING_KEY,
    SECRET,
    Hooks,
    active,
    hooks_fixture,
    sent,
    unique,
)

AT = datetime(2025, 3, 14, 9, 26, 53, 250000, tzinfo=UTC)


def mailgun_id() -> str:
    """What Mailgun's send API answers as "id" (and Anymail stores): angle brackets included."""
    return f"<20250314092653.{unique('')}a1b2c3@mg.example.com>"


def hook_for(message: Any, kind: Any, *, token: str | None = None,
             key: str = MAILGUN_SIGNING_KEY, **kw: Any) -> Any:
    """Mailgun's `kind` webhook for `message`, signed (with `key`) and with a fresh token."""
    return mailgun(kind, notification_id=str(message.pk),
                   provider_id=message.provider_message_id, recipient=message.to_email,
                   event_id=token or unique("c0ffee") + "f" * 38, at=AT, signing_key=key, **kw)


def test_delivered_marks_the_email_delivered(hooks: Hooks) -> None:
    message = sent(provider_id=mailgun_id())

    answer = hooks.post(hook_for(message, "delivered"))

    assert answer.status == 200
    message.refresh_from_db()
    assert message.status == Status.DELIVERED
    [event] = TrackingEvent.objects.all()
    assert (event.esp, event.event_type, event.message_id) == ("Mailgun", "delivered", message.pk)
    assert event.occurred_at == AT


def test_a_permanent_failure_is_a_hard_bounce_that_suppresses_the_address(hooks: Hooks) -> None:
    message = sent(provider_id=mailgun_id())

    answer = hooks.post(hook_for(message, "failed-permanent"))

    assert answer.status == 200
    message.refresh_from_db()
    assert (message.status, message.bounce) == (Status.BOUNCED, Bounce.HARD)
    assert "does not exist" in message.last_error  # Mailgun's SMTP message
    assert active("ann@example.com") == {"": SuppressionReason.HARD_BOUNCE}


def test_a_temporary_failure_is_recorded_as_deferred_without_moving_the_email(
    hooks: Hooks,
) -> None:
    # Mailgun keeps retrying a temporary failure itself and posts "failed"/"permanent" if it
    # gives up: the temporary one is a delay, not a bounce.
    message = sent(provider_id=mailgun_id())

    answer = hooks.post(hook_for(message, "failed-temporary"))

    assert answer.status == 200
    message.refresh_from_db()
    assert (message.status, message.bounce) == (Status.SENT, "")
    assert TrackingEvent.objects.get().event_type == "deferred"
    assert active("ann@example.com") == {}


def test_a_complaint_marks_the_email_complained_and_suppresses_every_email(
    hooks: Hooks,
) -> None:
    message = sent(provider_id=mailgun_id())
    hooks.post(hook_for(message, "delivered"))

    answer = hooks.post(hook_for(message, "complained"))

    assert answer.status == 200
    message.refresh_from_db()
    assert message.status == Status.COMPLAINED
    assert active("ann@example.com") == {"": SuppressionReason.COMPLAINT}


@pytest.mark.parametrize(("kind", "recorded_as"), [("opened", "opened"),
                                                   ("clicked", "clicked")])
def test_opens_and_clicks_are_recorded_only(hooks: Hooks, kind: Any, recorded_as: str) -> None:
    message = sent(provider_id=mailgun_id())

    assert hooks.post(hook_for(message, kind)).status == 200

    message.refresh_from_db()
    assert message.status == Status.SENT
    assert TrackingEvent.objects.get().event_type == recorded_as


def test_an_unsubscribe_suppresses_the_emails_category(hooks: Hooks) -> None:
    message = sent(provider_id=mailgun_id(), event="marketing.newsletter")

    answer = hooks.post(hook_for(message, "unsubscribed", event="marketing.newsletter"))

    assert answer.status == 200
    assert active("ann@example.com") == {"newsletter": SuppressionReason.UNSUBSCRIBE}


def test_it_matches_by_mailguns_message_id_when_no_user_variables_came_back(
    hooks: Hooks,
) -> None:
    message = sent(provider_id=mailgun_id())
    hook = mailgun("failed-permanent", notification_id=None,
                   provider_id=message.provider_message_id, recipient=message.to_email,
                   event_id="d" * 50, at=AT, signing_key=MAILGUN_SIGNING_KEY)

    assert hooks.post(hook).status == 200

    message.refresh_from_db()
    assert (message.status, message.bounce) == (Status.BOUNCED, Bounce.HARD)


def test_a_replayed_webhook_is_stored_once(hooks: Hooks) -> None:
    message = sent(provider_id=mailgun_id())
    hook = hook_for(message, "failed-permanent", token="e" * 50)

    assert [hooks.post(hook).status for _ in range(2)] == [200, 200]

    assert TrackingEvent.objects.count() == 1
    assert Suppression.objects.count() == 1


def test_a_wrong_signature_is_refused_and_nothing_is_stored(hooks: Hooks) -> None:
    message = sent(provider_id=mailgun_id())
    forged = hook_for(message, "complained", key="someone-elses-key")
    # Mailgun signs timestamp + token (the event id): a genuine signature moved onto another
    # token, to pass a replay off as a new event, no longer matches.
    body = json.loads(hook_for(message, "complained").body)
    body["signature"]["token"] = "f" * 50
    moved = forged.with_body(json.dumps(body).encode())

    answers = [hooks.post(forged).status, hooks.post(moved).status]

    assert answers == [400, 400]
    assert TrackingEvent.objects.count() == 0
    message.refresh_from_db()
    assert message.status == Status.SENT
    assert Suppression.objects.count() == 0


@pytest.mark.parametrize("auth", [None, "hook:wrong", "someone:" + SECRET.split(":")[1]])
def test_a_correctly_signed_webhook_without_our_basic_auth_is_refused(
    hooks: Hooks, auth: str | None,
) -> None:
    message = sent(provider_id=mailgun_id())

    answer = hooks.post(hook_for(message, "failed-permanent"), auth=auth)

    assert answer.status == 400
    assert TrackingEvent.objects.count() == 0
    assert Suppression.objects.count() == 0
