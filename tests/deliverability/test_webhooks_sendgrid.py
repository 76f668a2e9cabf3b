"""SendGrid's Event Webhook posted to Anymail's real view on a live server: a batch of events
for several emails, a duplicated event in a batch, and the Signed Event Webhook's ECDSA
signature accepted when right and refused when the body or the signature is altered."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from notifications.models import (
    Bounce,
    Message,
    Status,
    Suppression,
    SuppressionReason,
    TrackingEvent,
)
from tests.deliverability.payloads.sendgrid import SigningKey, sendgrid, sendgrid_event
from tests.deliverability.payloads.server import (  # noqa: F401 (hooks_fixture: a fixture)
    Hooks,
    active,
    hooks_fixture,
    sent,
    unique,
)

AT = datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC)

# SendGrid's own warning, raised by Anymail's view on every request.
pytestmark = pytest.mark.filterwarnings("ignore:django-anymail has dropped official support")


def event_for(message: Any, kind: Any, *, event_id: str | None = None, **kw: Any) -> Any:
    """SendGrid's `kind` event for `message`, with a fresh sg_event_id unless given."""
    return sendgrid_event(kind, notification_id=str(message.pk),
                          provider_id=message.provider_message_id,
                          recipient=message.to_email, event_id=event_id or unique("sg-ev-"),
                          at=AT, **kw)


def to(address: str, event: str = "order.placed") -> Any:
    """An email SendGrid accepted; its id is the anymail_id custom arg Anymail's backend made."""
    return sent(provider_id=str(uuid.uuid4()), to=address, event=event)


def test_one_batch_moves_each_email_by_its_own_event(hooks: Hooks) -> None:
    ok, gone, blocked, dropped, spam, opened = (
        to("ok@example.com"), to("gone@example.com"), to("blocked@example.com"),
        to("dropped@example.com"), to("spam@example.com"), to("open@example.com"))
    news = to("news@example.com", "marketing.newsletter")
    batch = [
        event_for(ok, "delivered"),
        event_for(gone, "bounce"),
        event_for(blocked, "blocked"),
        event_for(dropped, "dropped"),
        event_for(spam, "delivered"), event_for(spam, "spamreport"),
        event_for(opened, "delivered"), event_for(opened, "open"), event_for(opened, "click"),
        event_for(news, "delivered", event="marketing.newsletter"),
        event_for(news, "unsubscribe", event="marketing.newsletter"),
    ]

    answer = hooks.post(sendgrid(batch))

    assert answer.status == 200
    status = {m.to_email: (m.status, m.bounce) for m in Message.objects.all()}
    assert status == {
        "ok@example.com": (Status.DELIVERED, ""),
        "gone@example.com": (Status.BOUNCED, Bounce.HARD),
        "blocked@example.com": (Status.BOUNCED, Bounce.SOFT),  # a block is the sender's IP
        "dropped@example.com": (Status.BOUNCED, Bounce.HARD),  # dropped: "Bounced Address"
        "spam@example.com": (Status.COMPLAINED, ""),
        "open@example.com": (Status.DELIVERED, ""),
        "news@example.com": (Status.DELIVERED, ""),
    }
    suppressed = dict(Suppression.objects.filter(active=True).values_list("email", "reason"))
    assert suppressed == {
        "gone@example.com": SuppressionReason.HARD_BOUNCE,
        "dropped@example.com": SuppressionReason.HARD_BOUNCE,
        "spam@example.com": SuppressionReason.COMPLAINT,
        "news@example.com": SuppressionReason.UNSUBSCRIBE,
    }
    assert active("news@example.com") == {"newsletter": SuppressionReason.UNSUBSCRIBE}
    assert TrackingEvent.objects.count() == len(batch)
    assert set(TrackingEvent.objects.filter(message=opened).values_list(
        "event_type", flat=True)) == {"delivered", "opened", "clicked"}


def test_a_deferral_is_recorded_without_moving_the_email(hooks: Hooks) -> None:
    message = to("slow@example.com")

    assert hooks.post(sendgrid([event_for(message, "deferred")])).status == 200

    message.refresh_from_db()
    assert message.status == Status.SENT
    assert TrackingEvent.objects.get().event_type == "deferred"


def test_an_event_repeated_in_a_batch_and_in_a_later_post_is_stored_once(hooks: Hooks) -> None:
    message = to("gone@example.com")
    bounce = event_for(message, "bounce", event_id="ZGVsaXZlcmVkLTAtMjQ5OTY0NjktNTQ0NTE1")
    delivered = event_for(message, "delivered")

    first = hooks.post(sendgrid([bounce, delivered, bounce]))
    again = hooks.post(sendgrid([bounce]))

    assert (first.status, again.status) == (200, 200)
    assert sorted(TrackingEvent.objects.values_list("event_type", flat=True)) == [
        "bounced", "delivered"]
    message.refresh_from_db()
    assert (message.status, message.bounce) == (Status.BOUNCED, Bounce.HARD)
    assert Suppression.objects.count() == 1


@pytest.fixture
def signing_key(hooks: Hooks, settings: Any) -> SigningKey:
    key = SigningKey.generate()
    settings.ANYMAIL = {**settings.ANYMAIL,
                        "SENDGRID_TRACKING_WEBHOOK_VERIFICATION_KEY": key.public_key_setting}
    return key


def test_a_correctly_signed_post_is_accepted(hooks: Hooks, signing_key: SigningKey) -> None:
    message = to("gone@example.com")

    answer = hooks.post(sendgrid([event_for(message, "bounce")], key=signing_key))

    assert answer.status == 200
    message.refresh_from_db()
    assert message.bounce == Bounce.HARD


def test_an_altered_or_unsigned_post_is_refused_and_nothing_is_stored(
    hooks: Hooks, signing_key: SigningKey,
) -> None:
    message = to("ann@example.com")
    genuine = sendgrid([event_for(message, "delivered")], key=signing_key)
    altered = json.loads(genuine.body)
    altered[0]["event"] = "spamreport"
    other_key = sendgrid([event_for(message, "spamreport")], key=SigningKey.generate())
    restamped = sendgrid([event_for(message, "spamreport")], key=signing_key)
    restamped.headers["X-Twilio-Email-Event-Webhook-Timestamp"] = "1718122801"
    unsigned = sendgrid([event_for(message, "spamreport")])

    answers = [hooks.post(hook).status for hook in (
        genuine.with_body(json.dumps(altered).encode()), other_key, restamped, unsigned)]

    assert answers == [400, 400, 400, 400]
    assert TrackingEvent.objects.count() == 0
    message.refresh_from_db()
    assert message.status == Status.SENT
    assert Suppression.objects.count() == 0


def test_a_signed_post_still_needs_our_basic_auth(hooks: Hooks, signing_key: SigningKey) -> None:
    message = to("gone@example.com")

    answer = hooks.post(sendgrid([event_for(message, "bounce")], key=signing_key),
                        auth="hook:wrong")

    assert answer.status == 400
    assert TrackingEvent.objects.count() == 0
