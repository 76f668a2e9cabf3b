"""Dead letters made the way the drain makes them: claimed, then killed with a signature."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dlq.signatures import failure_signature
from notifications import transitions
from notifications.delivery import claim_batch
from notifications.models import DeadReason, DeliveryAttempt, Message, Outcome
from notifications.services import notify

ORDER = {"order_id": 1, "total": "1", "items": []}


def dead_message(to: str = "ann@example.com", *, event: str = "order.placed",
                 data: dict[str, Any] | None = None,
                 reason: DeadReason = DeadReason.MAX_ATTEMPTS,
                 error_class: str = "smtplib.SMTPDataError", error_code: str = "451",
                 error: str = "(451, b'4.3.0 try later')",
                 outcome: Outcome = Outcome.TRANSIENT,
                 idempotency_key: str | None = None,
                 created_at: datetime | None = None) -> Message:
    message = notify(event=event, to=to, data=data if data is not None else ORDER,
                     idempotency_key=idempotency_key)
    [claimed] = [m for m in claim_batch(message.lane, 1000) if m.pk == message.pk]
    DeliveryAttempt.objects.create(
        message_id=message.pk, number=1, started_at=claimed.lease_until, outcome=outcome,
        error_class=error_class, error_code=error_code, error_message=error)
    signature = failure_signature(dead_reason=reason, error_class=error_class,
                                  error_code=error_code, error_message=error, to_email=to)
    transitions.kill([message.pk], token=claimed.lease_token, reason=reason,
                     error=f"{error_class}: {error}", signature=signature)
    if created_at is not None:
        Message.objects.filter(pk=message.pk).update(created_at=created_at)
    return Message.objects.get(pk=message.pk)
