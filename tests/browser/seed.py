"""Rows for the browser tests and the screenshots, made the way the platform makes them: notify()
queues, a drain or the transitions move them on. No status is written by hand."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth.models import Group, User
from django.utils import timezone

from dlq.signatures import failure_signature
from notifications import transitions
from notifications.delivery import claim_batch
from notifications.models import DeadReason, DeliveryAttempt, Message, Outcome
from notifications.wakeups import wake_taken

PASSWORD = "console-browser-pw"

ORDER = {"order_id": 1, "total": "$19.90", "items": [{"name": "Tea", "qty": 2}]}
NEWSLETTER = {"headline": "Spring sale", "body": "Everything 20% off this week."}


def console_user(username: str, group: str) -> User:
    """A staff user whose permissions come only from one of the console's groups. No email
    address: creating a user with one sends `user.registered` (notifications/receivers.py)."""
    user = User.objects.create_user(username, password=PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    return user


def claimed(message: Message) -> Message:
    """Claim `message` (pending and due) as a drain would; returns it with its lease token.
    Other due messages of its lane that the claim took are left processing: call this before
    queueing messages that must stay pending."""
    wake_taken(message.lane)  # as drain_lane does first: the lane's next commit wakes it again
    batch = claim_batch(message.lane, 1000)
    [mine] = [m for m in batch if m.pk == message.pk]
    return mine


def dead_letter(*, to: str = "ann@example.com", event: str = "order.placed",
                data: dict[str, Any] | None = None, reason: DeadReason = DeadReason.MAX_ATTEMPTS,
                error: str = "smtplib.SMTPDataError: (451, b'4.3.0 try later')",
                code: str = "451", outcome: Outcome | None = None) -> Message:
    """A message that went through notify(), was claimed, failed once (a DeliveryAttempt with
    `error`'s class, `code` and text, as the drain records it) and died (transitions.kill) with
    the failure signature the drain computes from that attempt: what the groups page groups by."""
    from notifications.services import notify

    message = claimed(notify(event=event, to=to, data=ORDER if data is None else data))
    error_class, _, text = error.partition(": ") if ": " in error else ("", "", error)
    if outcome is None:
        outcome = {DeadReason.PERMANENT_ERROR: Outcome.PERMANENT,
                   DeadReason.EXPIRED: Outcome.EXPIRED}.get(reason, Outcome.TRANSIENT)
    DeliveryAttempt.objects.create(
        message_id=message.pk, number=1, started_at=message.lease_until, outcome=outcome,
        error_class=error_class, error_code=code, error_message=text)
    signature = failure_signature(dead_reason=reason, error_class=error_class, error_code=code,
                                  error_message=text, to_email=to)
    transitions.kill([message.pk], token=message.lease_token, reason=reason, error=error,
                     signature=signature)
    return Message.objects.get(pk=message.pk)


def retrying(*, to: str, error: str) -> Message:
    """A message whose first try failed and that waits for its next (transitions.schedule_retry)."""
    from notifications.services import notify

    message = claimed(notify(event="order.placed", to=to, data=ORDER))
    transitions.schedule_retry(message.pk, token=message.lease_token,
                               due=timezone.now() + timedelta(minutes=5), error=error)
    return Message.objects.get(pk=message.pk)
