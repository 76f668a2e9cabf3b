"""Errors a producer can get back from notify(). Each names the field at fault and why.

All derive from NotifyError (a ValueError) so a caller can catch one type; the API maps them to
HTTP 400 with `field` and `message` (IdempotencyConflict to 409). Nothing is written when one is
raised. These are the only producer-side rules: the API checks nothing but JSON types.
"""

from __future__ import annotations

from typing import Any


class NotifyError(ValueError):
    code = "invalid"
    field = ""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if field is not None:
            self.field = field

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "field": self.field, "message": self.message}


class UnknownEvent(NotifyError):
    code = "unknown_event"
    field = "event"


class InvalidEventData(NotifyError):
    code = "invalid_data"
    field = "data"

    def __init__(self, message: str, *, path: str = "$") -> None:
        super().__init__(f"{path}: {message}", field="data")
        self.path = path
        self.reason = message


class InvalidRecipient(NotifyError):
    code = "invalid_recipient"
    field = "to"


class InvalidLocale(NotifyError):
    code = "invalid_locale"
    field = "locale"


class InvalidSendAt(NotifyError):
    code = "invalid_send_at"
    field = "send_at"


class TemplateUnavailable(NotifyError):
    code = "template_unavailable"
    field = "event"


class InvalidIdempotencyKey(NotifyError):
    code = "invalid_idempotency_key"
    field = "idempotency_key"


class IdempotencyConflict(NotifyError):
    """The idempotency key was used before with a different request: nothing new is queued.

    `existing` is the message the key already names."""

    code = "idempotency_conflict"
    field = "idempotency_key"

    def __init__(self, existing: Any) -> None:
        super().__init__("This idempotency key was used with a different body.")
        self.existing = existing
