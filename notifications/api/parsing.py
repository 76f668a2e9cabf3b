"""The API's side of an event: is the JSON shaped like one? And the message as JSON.

Only JSON types are checked here: required fields, unknown fields (a typo must not lose data),
strings where strings belong, an object for `data`, a parseable datetime for `send_at`. Whether
the event is acceptable (lengths, address, locale, schema, the send_at window, idempotency) is
decided by notifications.services for every entry point alike; the views map its NotifyErrors to
HTTP. Plain functions rather than DRF serializers: running a 1,000-event batch through
serializers cost more than the rest of the request. serializers.py only describes the wire
format for the OpenAPI schema.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework.exceptions import ValidationError

from notifications.content import message_subject
from notifications.models import Message
from notifications.services import EventRequest

FIELDS = {"event", "to", "data", "locale", "send_at", "idempotency_key"}
RECIPIENT_FIELDS = {"email", "name"}
REQUIRED = "This field is required."
NOT_A_STRING = "Not a valid string."
DATETIME_FORMAT = (
    "Datetime has wrong format. Use one of these formats instead: "
    "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]."
)

Errors = dict[str, list[str]]


def parse_event(body: Any) -> tuple[EventRequest | None, Errors]:
    """One event object to an EventRequest, or the errors per field (dotted for nested)."""
    if not isinstance(body, dict):
        return None, {"non_field_errors": ["Each event must be a JSON object."]}
    errors: Errors = {name: ["Unknown field."] for name in sorted(set(body) - FIELDS)}

    event = body.get("event")
    if event is None:
        errors["event"] = [REQUIRED]
    elif not isinstance(event, str):
        errors["event"] = [NOT_A_STRING]

    to = _recipient(body.get("to"), errors)

    data = body.get("data", {})
    if data is None:
        data = {}
    if not isinstance(data, dict):
        errors["data"] = [f'Expected a dictionary of items but got type "{type(data).__name__}".']

    locale = body.get("locale")
    if locale is not None and not isinstance(locale, str):
        errors["locale"] = [NOT_A_STRING]

    send_at = body.get("send_at")
    if send_at is not None:
        send_at = _datetime(send_at)
        if send_at is None:
            errors["send_at"] = [DATETIME_FORMAT]

    key = body.get("idempotency_key")
    if key is not None and not isinstance(key, str):
        errors["idempotency_key"] = [NOT_A_STRING]

    if errors or not isinstance(event, str):
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
    if errors or not isinstance(events, list):
        raise ValidationError(errors)
    return events


def _recipient(value: Any, errors: Errors) -> dict[str, str]:
    """`to` in the one form the services hash and check: {"email", "name"}."""
    if value is None:
        errors["to"] = [REQUIRED]
    elif isinstance(value, str):
        return {"email": value, "name": ""}
    elif isinstance(value, dict):
        for name in sorted(set(value) - RECIPIENT_FIELDS):
            errors[f"to.{name}"] = ["Unknown field."]
        email, name = value.get("email"), value.get("name", "")
        if email is None:
            errors["to.email"] = [REQUIRED]
        elif not isinstance(email, str):
            errors["to.email"] = [NOT_A_STRING]
        if name is not None and not isinstance(name, str):
            errors["to.name"] = [NOT_A_STRING]
        return {"email": email or "", "name": name or ""}
    else:
        errors["to"] = ["Must be an email address or {email, name}."]
    return {"email": "", "name": ""}


def _datetime(value: Any) -> Any:
    """An ISO 8601 string as an aware datetime (UTC when it names no offset), or None."""
    try:
        parsed = parse_datetime(value) if isinstance(value, str) else None
    except ValueError:  # well formatted but no such date, e.g. February 30th
        return None
    if parsed is not None and timezone.is_naive(parsed):
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


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
                "provider": a.provider,
                "error": f"{a.error_class}: {a.error_message}" if a.error_class
                else a.error_message,
            }
            for a in message.delivery_attempts.all()
        ]
    return payload
