"""What every ESP's webhook view refuses, and that a refusal writes nothing: no secret
configured (our 403), missing or wrong basic auth (Anymail's 400, SNS's 401 challenge), bodies
that are not the ESP's payload (400, never a 500 an ESP would retry for days), and the URL of
a signing ESP this deployment has no key for (403)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import DatabaseError

from notifications.models import Message, Status, Suppression, TrackingEvent
from tests.deliverability.payloads import Hook
from tests.deliverability.payloads.amazon_ses import amazon_ses, sns
from tests.deliverability.payloads.mailgun import mailgun
from tests.deliverability.payloads.postmark import postmark
from tests.deliverability.payloads.sendgrid import sendgrid, sendgrid_event
from tests.deliverability.payloads.server import (  # noqa: F401 (hooks_fixture: a fixture)
    MAILGUN_SIGNING_KEY,
    SECRET,
    Hooks,
    hooks_fixture,
    sent,
    unique,
)

AT = datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC)
ESPS = ["postmark", "mailgun", "amazon_ses", "sendgrid"]

pytestmark = pytest.mark.filterwarnings("ignore:django-anymail has dropped official support")


def hard_bounce(esp: str, message: Message) -> Hook:
    """`message`'s hard bounce as `esp` posts it."""
    ids = {"notification_id": str(message.pk), "provider_id": message.provider_message_id,
           "recipient": message.to_email, "at": AT}
    if esp == "postmark":
        return postmark("HardBounce", event_id=901, **ids)
    if esp == "mailgun":
        return mailgun("failed-permanent", event_id=uuid.uuid4().hex + "a" * 18,
                       signing_key=MAILGUN_SIGNING_KEY, **ids)
    if esp == "amazon_ses":
        return amazon_ses("Bounce-Permanent", event_id=str(uuid.uuid4()), **ids)
    return sendgrid([sendgrid_event("bounce", event_id=unique("sg-ev-"), **ids)])


def nothing_changed(message: Message) -> None:
    assert TrackingEvent.objects.count() == 0
    assert Suppression.objects.count() == 0
    message.refresh_from_db()
    assert (message.status, message.bounce) == (Status.SENT, "")


@pytest.mark.parametrize("esp", ESPS)
def test_without_a_webhook_secret_every_webhook_is_refused(
    hooks: Hooks, settings: Any, esp: str,
) -> None:
    settings.ANYMAIL = {k: v for k, v in settings.ANYMAIL.items() if k != "WEBHOOK_SECRET"}
    message = sent(provider_id=unique("id-"))

    answer = hooks.post(hard_bounce(esp, message), auth=None)

    assert answer.status == 403
    assert json.loads(answer.body)["error"] == "webhooks_disabled"
    nothing_changed(message)


@pytest.mark.parametrize(("esp", "auth", "status"), [
    ("postmark", None, 400), ("postmark", "hook:wrong", 400),
    ("mailgun", None, 400), ("mailgun", "hook:wrong", 400),
    ("amazon_ses", None, 401), ("amazon_ses", "hook:wrong", 400),
    ("sendgrid", None, 400), ("sendgrid", "hook:wrong", 400),
])
def test_missing_or_wrong_basic_auth_is_refused_and_nothing_is_stored(
    hooks: Hooks, esp: str, auth: str | None, status: int,
) -> None:
    message = sent(provider_id=unique("id-"))

    answer = hooks.post(hard_bounce(esp, message), auth=auth)

    assert answer.status == status
    nothing_changed(message)


@pytest.mark.parametrize("esp", ESPS)
@pytest.mark.parametrize("body", [b'{"RecordType": "Bounce", "Type": ', b"\xff\xfe not utf-8",
                                  b"", b"null", b'"just a string"', b"[1, 2]"])
def test_a_body_that_is_not_the_esps_payload_is_a_400(
    hooks: Hooks, esp: str, body: bytes,
) -> None:
    message = sent(provider_id=unique("id-"))

    answer = hooks.post(hard_bounce(esp, message).with_body(body))

    # Anymail answered 500 for most of these (Postmark, SES, SendGrid parse without checks).
    assert answer.status == 400, answer.body
    nothing_changed(message)


@pytest.mark.parametrize(("esp", "breakage"), [
    pytest.param("postmark", lambda p: [p], id="postmark-a-list-of-records"),
    pytest.param("postmark", lambda p: {**p, "BouncedAt": "2025-02-30T25:61:00Z"},
                 id="postmark-impossible-date"),
    pytest.param("mailgun", lambda p: {"signature": p["signature"]},
                 id="mailgun-signed-without-event-data"),
    pytest.param("mailgun", lambda p: {**p, "event-data": {**p["event-data"],
                                                          "timestamp": "soon"}},
                 id="mailgun-timestamp-not-a-number"),
    pytest.param("sendgrid", lambda p: p[0], id="sendgrid-one-event-not-the-array"),
    pytest.param("sendgrid", lambda p: [{k: v for k, v in p[0].items() if k != "event"}],
                 id="sendgrid-event-without-its-type"),
    pytest.param("sendgrid", lambda p: [{**p[0], "timestamp": "yesterday"}],
                 id="sendgrid-timestamp-not-a-number"),
])
def test_a_payload_missing_what_the_esp_documents_is_a_400(
    hooks: Hooks, esp: str, breakage: Any,
) -> None:
    message = sent(provider_id=unique("id-"))
    hook = hard_bounce(esp, message)

    answer = hooks.post(hook.with_body(json.dumps(breakage(json.loads(hook.body))).encode()))

    assert answer.status == 400, answer.body
    nothing_changed(message)


def test_an_unparsable_ses_message_inside_a_good_sns_envelope_is_a_400(hooks: Hooks) -> None:
    message = sent(provider_id=unique("id-"))

    answer = hooks.post(sns("{not json", event_id=str(uuid.uuid4()), at=AT))

    assert answer.status == 400
    assert json.loads(answer.body)["error"] == "malformed_payload"
    nothing_changed(message)


def test_a_malformed_body_with_wrong_auth_hears_only_about_the_auth(hooks: Hooks) -> None:
    # SES's view reads the body before it checks basic auth: a stranger must not learn more.
    message = sent(provider_id=unique("id-"))

    answer = hooks.post(hard_bounce("amazon_ses", message).with_body(b"{oops"),
                        auth="hook:wrong")

    assert answer.status == 400
    assert b"malformed_payload" not in answer.body
    nothing_changed(message)


def test_a_database_failure_while_storing_is_still_a_500_the_esp_retries(
    hooks: Hooks, monkeypatch: pytest.MonkeyPatch,
) -> None:
    message = sent(provider_id=unique("id-"))

    def database_down(*args: Any, **kwargs: Any) -> None:
        raise DatabaseError("connection lost")

    monkeypatch.setattr("notifications.tracking.record_event", database_down)

    answer = hooks.post(hard_bounce("postmark", message))

    assert answer.status == 500
    nothing_changed(message)


@pytest.mark.parametrize("esp", ["mailgun", "postal", "mandrill", "mailersend"])
def test_the_url_of_a_signing_esp_without_its_key_is_a_403_not_a_500(
    hooks: Hooks, settings: Any, esp: str,
) -> None:
    # This deployment does not use that ESP, so its signing key is not set; anyone may still
    # post to the URL.
    settings.ANYMAIL = {k: v for k, v in settings.ANYMAIL.items()
                        if k != "MAILGUN_WEBHOOK_SIGNING_KEY"}

    answers = [hooks.post(Hook(esp, b"{}", {"Content-Type": "application/json"}), auth=auth)
               for auth in (None, SECRET)]

    assert [a.status for a in answers] == [403, 403]
    assert json.loads(answers[1].body)["error"] == "webhook_not_configured"
    assert TrackingEvent.objects.count() == 0
