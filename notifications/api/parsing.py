"""Fast request parsing and response building for the hot API paths.

The DRF serializers in serializers.py describe the API in the OpenAPI schema; validating and
rendering every event through them cost more than the rest of a request (a 1,000-event batch
built 2,000 serializers). These plain functions apply the same rules with the same messages.
"""

from __future__ import annotations

from datetime import UTC, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework.exceptions import ValidationError

from notifications.content import message_subject
from notifications.models import Message
from notifications.services import LOCALE_RE, EventRequest

FIELDS = {"event", "to", "data", "locale", "send_at", "idempotency_key"}
RECIPIENT_FIELDS = {"email", "name"}
REQUIRED = "This field is required."
DATETIME_FORMAT = (
    "Datetime has wrong format. Use one of these formats instead: "
    "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]."
)

Errors = dict[str, list[str]]


def _string(value: Any, limit: int, *, blank: bool = False) -> str | None:
    """The reason a value is not an acceptable string, or None."""
    if not isinstance(value, str):
        return "Not a valid string."
    if not value.strip() and not blank:
        return "This field may not be blank."
    if len(value) > limit:
        return f"Ensure this field has no more than {limit} characters."
    return None


def parse_event(body: Any) -> tuple[EventRequest | None, Errors]:
    """One event object to an EventRequest, or the errors per field (dotted for nested)."""
    if not isinstance(body, dict):
        return None, {"non_field_errors": ["Each event must be a JSON object."]}
    errors: Errors = {name: ["Unknown field."] for name in sorted(set(body) - FIELDS)}

    event = body.get("event")
    if event is None:
        errors["event"] = [REQUIRED]
    elif reason := _string(event, 100):
        errors["event"] = [reason]

    to = _recipient(body.get("to"), errors)

    data = body.get("data", {})
    if data is None:
        data = {}
    if not isinstance(data, dict):
        errors["data"] = [f'Expected a dictionary of items but got type "{type(data).__name__}".']

    locale = body.get("locale")
    if locale is not None and (
        not isinstance(locale, str) or len(locale) > 16 or not LOCALE_RE.match(locale)
    ):
        errors["locale"] = ["Not a language code such as 'en' or 'pt-BR'."]

    send_at = body.get("send_at")
    if send_at is not None:
        send_at, reason = _send_at(send_at)
        if reason:
            errors["send_at"] = [reason]

    key = body.get("idempotency_key")
    if key is not None and (reason := _string(key, 200)):
        errors["idempotency_key"] = [reason]

    if errors:
        return None, errors
    return EventRequest(event=event, to=to, data=data, locale=locale, idempotency_key=key,
                        send_at=send_at), {}


def parse_batch(body: Any) -> list[Any]:
    """The events of a batch body (each still to be parsed on its own), or ValidationError."""
    if not isinstance(body, dict):
        raise ValidationError({"non_field_errors": ["Body must be a JSON object."]})
    errors: Errors = {name: ["Unknown field."] for name in sorted(set(body) - {"events"})}
    events = body.get("events")
    limit = settings.NOTIFY_API["BATCH_MAX"]
    if events is None:
        errors["events"] = [REQUIRED]
    elif not isinstance(events, list):
        errors["events"] = [f'Expected a list of items but got type "{type(events).__name__}".']
    elif not events:
        errors["events"] = ["This list may not be empty."]
    elif len(events) > limit:
        errors["events"] = [f"At most {limit} events per batch."]
    if errors:
        raise ValidationError(errors)
    return events


def _recipient(value: Any, errors: Errors) -> dict[str, str]:
    if value is None:
        errors["to"] = [REQUIRED]
    elif isinstance(value, str):
        if not value or len(value) > 254:
            errors["to"] = ["Must be an email address (1-254 characters)."]
        return {"email": value, "name": ""}
    elif isinstance(value, dict):
        for name in sorted(set(value) - RECIPIENT_FIELDS):
            errors[f"to.{name}"] = ["Unknown field."]
        email, name = value.get("email"), value.get("name", "")
        if email is None:
            errors["to.email"] = [REQUIRED]
        elif reason := _string(email, 254):
            errors["to.email"] = [reason]
        if name is not None and (reason := _string(name, 200, blank=True)):
            errors["to.name"] = [reason]
        return {"email": email or "", "name": name or ""}
    else:
        errors["to"] = ["Must be an email address or {email, name}."]
    return {"email": "", "name": ""}


def _send_at(value: Any) -> tuple[Any, str | None]:
    parsed = parse_datetime(value) if isinstance(value, str) else None
    if parsed is None:
        return None, DATETIME_FORMAT
    if timezone.is_naive(parsed):
        parsed = parsed.replace(tzinfo=UTC)
    now = timezone.now()
    conf = settings.NOTIFY_API
    if parsed < now - timedelta(seconds=conf["SEND_AT_SKEW_SECONDS"]):
        return None, "Must not be in the past."
    horizon = timedelta(days=conf["SEND_AT_HORIZON_DAYS"])
    if parsed > now + horizon:
        return None, f"Must be within {horizon.days} days from now."
    return parsed, None


def message_payload(message: Message, *, detail: bool = False) -> dict[str, Any]:
    """The API's message representation (MessageSerializer and MessageDetailSerializer)."""
    payload = {
        "id": message.pk,
        "status": message.status,
        "event": message.event_type.key,
        "lane": message.lane,
        "priority": message.priority,
        "to": {"email": message.to_email, "name": message.to_name},
        "locale": message.locale,
        "idempotency_key": message.idempotency_key,
        "attempts": message.attempts,
        "max_attempts": message.max_attempts,
        "send_at": message.next_attempt_at,
        "expires_at": message.expires_at,
        "last_error": message.last_error,
        "dead_reason": message.dead_reason,
        "created_at": message.created_at,
        "updated_at": message.updated_at,
        "sent_at": message.sent_at,
    }
    if detail:
        payload["subject"] = message_subject(message)
        payload["attempt_log"] = [
            {
                "number": a.number,
                "started_at": a.started_at,
                "duration_ms": a.duration_ms,
                "outcome": a.outcome,
                "error": f"{a.error_class}: {a.error_message}" if a.error_class
                else a.error_message,
            }
            for a in message.delivery_attempts.all()
        ]
    return payload
