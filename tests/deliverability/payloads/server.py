"""The other side of the payloads: the live server they are posted to, and the sent emails
they are about.

`hooks` (a test module imports `hooks_fixture` to use it) configures Anymail the way
production does (a WEBHOOK_SECRET for basic auth, Mailgun's signing key) and posts over real
HTTP to pytest-django's `live_server`, a thread of this process serving the test database:
what the test commits the views see, what the receiver writes the test reads back, and
`settings` changes reach the views (they read ANYMAIL per request). Messages are made with
notify() and moved to `sent` with the real claim and mark_sent transitions, with the ESP's id
as a drain would record it.
"""

from __future__ import annotations

from itertools import count
from typing import Any

import pytest

from notifications import transitions
from notifications.delivery import claim_batch
from notifications.models import Message, Status, Suppression
from notifications.services import notify
from tests.deliverability.payloads import Answer, Hook, post

SECRET = "hook:secret"
MAILGUN_SIGNING_KEY = "mailgun-webhook-signing-key-4f1c2b"

DATA: dict[str, dict[str, Any]] = {
    "order.placed": {"order_id": 7, "total": "$5", "items": [{"name": "Tea", "qty": 1}]},
    "user.registered": {"username": "ann"},
    "password.reset": {"reset_url": "https://example.com/r/1"},
    "marketing.newsletter": {"headline": "News", "body": "Hello"},
}

_ids = count(1)


def unique(prefix: str) -> str:
    """A fresh id for an ESP's message or event (unique within the test run)."""
    return f"{prefix}{next(_ids):06d}"


class Hooks:
    """Posts webhook requests to the live server, with the configured secret by default."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def post(self, hook: Hook, *, auth: str | None = SECRET) -> Answer:
        return post(self.base_url, hook, auth=auth)


@pytest.fixture(name="hooks")
def hooks_fixture(live_server: Any, settings: Any, demo: None, no_wakeups: list[str]) -> Hooks:
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": SECRET,
                        "MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_SIGNING_KEY}
    return Hooks(live_server.url)


def queued(*, to: str = "ann@example.com", event: str = "order.placed") -> Message:
    return notify(event=event, to=to, data=DATA[event])


def claimed(message: Message) -> Message:
    """`message` claimed by a drain (processing, with its lease token)."""
    [row] = claim_batch(message.lane, 1)
    assert row.pk == message.pk, "another message was due"
    return row


def mark_sent(row: Message, provider_id: str, provider: str = "default") -> Message:
    """The drain's record of the ESP accepting `row` (claimed) with id `provider_id`."""
    moved = transitions.mark_sent([row.pk], token=row.lease_token, provider=provider,
                                  provider_ids={row.pk: provider_id})
    assert moved == 1
    return Message.objects.get(pk=row.pk)


def sent(*, provider_id: str, to: str = "ann@example.com",
         event: str = "order.placed") -> Message:
    """A message the ESP accepted as `provider_id`: queued, claimed, marked sent."""
    message = mark_sent(claimed(queued(to=to, event=event)), provider_id)
    assert (message.status, message.provider_message_id) == (Status.SENT, provider_id)
    return message




def active(email: str) -> dict[str, str]:
    """The address's active suppressions, scope -> reason: what would stop its next email."""
    return dict(Suppression.objects.filter(email=email, active=True).values_list(
        "scope", "reason"))
