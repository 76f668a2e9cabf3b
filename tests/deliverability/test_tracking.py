"""The tracking receiver (notifications/tracking.py) behind Anymail's views: each event stored
once, unknown and early events kept and caught up later, odd values never a 500, and a few
queries per event. Posted as Postmark webhooks (real view, live server) unless the test is
about the in-process cost."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from anymail.signals import AnymailTrackingEvent
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from notifications.models import (
    Bounce,
    Message,
    Status,
    Suppression,
    SuppressionReason,
    TrackingEvent,
)
from notifications.tracking import catch_up_gap, history, record_event, tracking_catch_up
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


# --- the catch-up's queue -------------------------------------------------------------------------

def unknown_event(provider_id: str, kind: str = "delivered") -> TrackingEvent:
    """An event for a message nobody recorded (yet) as `provider_id`, as the receiver keeps it."""
    row = record_event("Postmark", AnymailTrackingEvent(
        event_type=kind, event_id=unique("ev-"), timestamp=AT, message_id=provider_id,
        recipient="ann@example.com", metadata={}, esp_event={"RecordType": kind}))
    assert row is not None and not row.applied and row.catch_up_at is not None
    return row


def waiting(row: TrackingEvent) -> tuple[int, bool, bool]:
    """(tries, still queued, applied)."""
    row.refresh_from_db()
    return row.catch_up_tries, row.catch_up_at is not None, row.applied


@pytest.mark.usefixtures("demo", "no_wakeups")
def test_events_that_never_match_cannot_hold_back_a_newer_one() -> None:
    two_hours_ago = timezone.now() - timedelta(hours=2)
    TrackingEvent.objects.bulk_create([
        TrackingEvent(esp="Postmark", dedupe_key=f"stale-{n}", event_type="delivered",
                      provider_message_id=f"pm-gone-{n}", recipient="x@example.com",
                      catch_up_at=two_hours_ago)
        for n in range(600)])
    TrackingEvent.objects.update(received_at=two_hours_ago)  # came before the new one
    provider_id = unique("pm-")
    new = unknown_event(provider_id)
    message = sent(provider_id=provider_id)  # now it matches

    runs = [tracking_catch_up(), tracking_catch_up()]  # two minutes of the sweeper

    assert sum(runs) == 1
    assert waiting(new) == (1, False, True)
    message.refresh_from_db()
    assert message.status == Status.DELIVERED
    # Every stale event had its turn (the first 500 a second one, behind the rest) and still
    # waits in the queue.
    stale = TrackingEvent.objects.exclude(pk=new.pk)
    assert sorted(set(stale.values_list("catch_up_tries", flat=True))) == [1, 2]
    assert not stale.filter(catch_up_at__isnull=True).exists()


@pytest.mark.usefixtures("demo", "no_wakeups")
def test_an_event_that_keeps_failing_is_tried_less_often() -> None:
    row = unknown_event(unique("pm-"))

    assert tracking_catch_up() == 0
    assert waiting(row) == (1, True, False)  # tried again at the next run...
    assert tracking_catch_up() == 0
    assert waiting(row) == (2, True, False)
    tracking_catch_up()
    assert waiting(row) == (2, True, False)  # ...then not before its gap has passed
    assert catch_up_gap(1) < catch_up_gap(2) < catch_up_gap(5) < catch_up_gap(7) \
        == catch_up_gap(30) == timedelta(hours=1)

    TrackingEvent.objects.filter(pk=row.pk).update(catch_up_at=timezone.now())
    assert tracking_catch_up() == 0
    assert waiting(row) == (3, True, False)


@pytest.mark.usefixtures("demo", "no_wakeups")
def test_an_event_unmatched_for_a_day_is_given_up_and_kept() -> None:
    provider_id = unique("pm-")
    row = unknown_event(provider_id)
    TrackingEvent.objects.filter(pk=row.pk).update(
        received_at=timezone.now() - timedelta(hours=23, minutes=59))

    tracking_catch_up()
    assert waiting(row) == (1, True, False)
    tracking_catch_up()  # its next try would come after CATCH_UP_HOURS
    assert waiting(row) == (2, False, False)

    message = sent(provider_id=provider_id)
    assert tracking_catch_up() == 0  # given up: not tried again
    assert waiting(row) == (2, False, False)
    message.refresh_from_db()
    assert message.status == Status.SENT
    assert TrackingEvent.objects.filter(pk=row.pk, message__isnull=True).exists()  # kept
