"""The tracking receiver (notifications/tracking.py) behind Anymail's views: each event stored
once, unknown and early events kept and caught up later, odd values never a 500, and a few
queries per event. Posted as Postmark webhooks (real view, live server) unless the test is
about the in-process cost."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from notifications.models import (
    Bounce,
    Message,
    Status,
    Suppression,
    SuppressionReason,
    TrackingEvent,
)
from notifications.tracking import history, tracking_catch_up
from tests.deliverability.payloads import basic_auth
from tests.deliverability.payloads.postmark import postmark
from tests.deliverability.payloads.server import (  # noqa: F401 (hooks_fixture: a fixture)
    SECRET,
    Hooks,
    claimed,
    hooks_fixture,
    mark_sent,
    queued,
    sent,
    unique,
)

AT = datetime(2025, 3, 14, 9, 26, 53, 589793, tzinfo=UTC)


def hook_for(message: Any, kind: Any, *, event_id: int | None = None, at: datetime = AT,
             provider_id: str | None = None, **kw: Any) -> Any:
    """Postmark's `kind` record for `message` (or for `provider_id`, not recorded yet)."""
    return postmark(kind, notification_id=str(message.pk),
                    provider_id=provider_id or message.provider_message_id,
                    recipient=message.to_email, event_id=event_id, at=at, **kw)


def test_a_replayed_event_is_stored_once_and_changes_nothing(hooks: Hooks) -> None:
    message = sent(provider_id=unique("pm-"))
    bounce = hook_for(message, "HardBounce", event_id=7001)
    assert hooks.post(bounce).status == 200
    suppression = Suppression.objects.get()
    message.refresh_from_db()
    before = (message.status, message.bounce, message.updated_at)

    answer = hooks.post(bounce)  # Postmark retries when it missed our first answer

    assert answer.status == 200
    assert TrackingEvent.objects.count() == 1
    message.refresh_from_db()
    assert (message.status, message.bounce, message.updated_at) == before
    assert Suppression.objects.get().updated_at == suppression.updated_at


def test_an_event_without_an_esp_id_is_deduplicated_by_message_type_and_time(
    hooks: Hooks,
) -> None:
    message = sent(provider_id=unique("pm-"))
    delivery = hook_for(message, "Delivery")  # Postmark's Delivery records carry no ID

    statuses = [hooks.post(delivery).status for _ in range(2)]
    later = hooks.post(hook_for(message, "Open", at=AT + timedelta(minutes=1))).status
    again = hooks.post(hook_for(message, "Open", at=AT + timedelta(minutes=2))).status

    assert statuses + [later, again] == [200] * 4
    assert [e.event_type for e in history(message.pk)] == ["delivered", "opened", "opened"]


def test_an_event_for_an_unknown_message_is_kept_and_matched_once_it_is_sent(
    hooks: Hooks,
) -> None:
    provider_id = unique("pm-")
    # No metadata came back (e.g. the email was sent before metadata was attached) and no
    # message has this id yet.
    early = postmark("HardBounce", notification_id=None, provider_id=provider_id,
                     recipient="ann@example.com", event_id=7101, at=AT)

    answer = hooks.post(early)

    assert answer.status == 200
    [event] = TrackingEvent.objects.all()
    assert (event.message_id, event.applied, event.provider_message_id) == (
        None, False, provider_id)
    assert Suppression.objects.count() == 0
    assert tracking_catch_up() == 0  # still nobody to match

    message = sent(provider_id=provider_id)
    assert tracking_catch_up() == 1

    event.refresh_from_db()
    message.refresh_from_db()
    assert (event.message_id, event.applied, event.lane) == (message.pk, True, "transactional")
    assert (message.status, message.bounce) == (Status.BOUNCED, Bounce.HARD)
    assert Suppression.objects.get().reason == SuppressionReason.HARD_BOUNCE
    assert tracking_catch_up() == 0  # applied once


def test_an_event_that_outruns_the_drain_applies_once_the_send_is_recorded(
    hooks: Hooks,
) -> None:
    provider_id = unique("pm-")
    row = claimed(queued())  # the ESP accepted it; the drain has not recorded that yet

    answer = hooks.post(hook_for(row, "HardBounce", event_id=7201, provider_id=provider_id))

    assert answer.status == 200
    [event] = TrackingEvent.objects.all()
    assert (event.message_id, event.applied) == (row.pk, False)
    # The address is suppressed at once: nothing else goes to it meanwhile.
    assert Suppression.objects.get().reason == SuppressionReason.HARD_BOUNCE
    assert Message.objects.get(pk=row.pk).status == Status.PROCESSING

    mark_sent(row, provider_id)
    assert tracking_catch_up() == 1

    message = Message.objects.get(pk=row.pk)
    assert (message.status, message.bounce) == (Status.BOUNCED, Bounce.HARD)
    event.refresh_from_db()
    assert event.applied
    assert Suppression.objects.count() == 1


def test_an_event_whose_recipient_is_not_the_messages_is_kept_unmatched(hooks: Hooks) -> None:
    message = sent(provider_id=unique("pm-"))
    other = postmark("HardBounce", notification_id=str(message.pk),
                     provider_id=message.provider_message_id, recipient="eve@example.com",
                     event_id=7301, at=AT)

    assert hooks.post(other).status == 200

    message.refresh_from_db()
    assert message.status == Status.SENT
    assert TrackingEvent.objects.get().message_id is None
    assert Suppression.objects.count() == 0


def test_odd_ids_and_text_are_stored_never_a_server_error(hooks: Hooks) -> None:
    message = sent(provider_id=unique("pm-"))
    huge = postmark("Delivery", notification_id="9" * 30, provider_id=unique("pm-"),
                    recipient="ann@example.com", at=AT)
    nul = hook_for(message, "HardBounce", event_id=7401,
                   details="smtp;550 5.1.1 \x00 unknown user \x00")

    answers = [hooks.post(huge).status, hooks.post(nul).status]

    assert answers == [200, 200]
    events = {e.event_type: e for e in TrackingEvent.objects.all()}
    assert events["delivered"].message_id is None
    assert events["bounced"].message_id == message.pk
    assert "\x00" not in events["bounced"].mta_response
    message.refresh_from_db()
    assert (message.status, message.bounce) == (Status.BOUNCED, Bounce.HARD)


def test_the_receiver_needs_a_few_queries_per_event(hooks: Hooks) -> None:
    message = sent(provider_id=unique("pm-"))
    delivery = hook_for(message, "Delivery")
    client = Client()

    with CaptureQueriesContext(connection) as queries:
        response = client.post("/anymail/postmark/tracking/", data=delivery.body,
                               content_type="application/json",
                               HTTP_AUTHORIZATION=basic_auth(SECRET))

    assert response.status_code == 200
    message.refresh_from_db()
    assert message.status == Status.DELIVERED
    # Match, then one transaction: move the message, store the event (5 with BEGIN/COMMIT).
    assert len(queries) <= 6, [q["sql"] for q in queries]
