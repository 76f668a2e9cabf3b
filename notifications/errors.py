"""Classifying send failures: one result type for every transport.

Whatever the backend (SMTP, any Anymail ESP), a failure becomes a SendResult whose `outcome` is
one of models.Outcome (the same words the DeliveryAttempt rows store): `transient` (nothing was
sent; retry), `permanent` (the provider refused this message; retrying cannot help) or `unknown`
(the request may have gone out: a read timeout, a reset after sending). Unknown is retried like
transient; the stable Message-ID lets the provider and webhooks match a duplicate.
"""

from __future__ import annotations

import smtplib
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from anymail.exceptions import (
    AnymailAPIError,
    AnymailError,
    AnymailRecipientsRefused,
)

from notifications.models import Outcome

# error_code of a permanent result whose template did not render at send time.
RENDER = "render"


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    error_class: str = ""
    error_code: str = ""
    error_message: str = ""
    retry_after: float | None = None
    provider_message_id: str = ""

    @property
    def retryable(self) -> bool:
        return self.outcome in (Outcome.TRANSIENT, Outcome.UNKNOWN)

    @property
    def throttled(self) -> bool:
        """The provider asked us to slow down (HTTP 429): it is up, so not a breaker failure."""
        return self.outcome == Outcome.TRANSIENT and self.error_code == "429"


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def classify(exc: BaseException) -> SendResult:
    name = f"{type(exc).__module__}.{type(exc).__qualname__}"
    text = str(exc)[:2000]
    if isinstance(exc, AnymailRecipientsRefused):
        return SendResult(Outcome.PERMANENT, name, "recipient_refused", text)
    if isinstance(exc, AnymailAPIError):
        return _classify_http(exc, name, text)
    if isinstance(exc, AnymailError):
        # Unsupported feature, invalid address and the like: this message can never be sent.
        return SendResult(Outcome.PERMANENT, name, "", text)
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        permanent = any(code >= 500 for code in codes)
        code = str(codes[0]) if codes else ""
        return SendResult(Outcome.PERMANENT if permanent else Outcome.TRANSIENT, name, code, text)
    if isinstance(exc, smtplib.SMTPResponseException):
        smtp_code = exc.smtp_code
        outcome = Outcome.PERMANENT if 500 <= smtp_code < 600 else Outcome.TRANSIENT
        return SendResult(outcome, name, str(smtp_code), text)
    if isinstance(exc, (ConnectionRefusedError, socket.gaierror, smtplib.SMTPConnectError)):
        return SendResult(Outcome.TRANSIENT, name, "connect", text)
    # Timeouts, resets and disconnects mid-conversation: the provider may have accepted it.
    if isinstance(exc, (OSError, smtplib.SMTPException)):
        return SendResult(Outcome.UNKNOWN, name, "io", text)
    return SendResult(Outcome.UNKNOWN, name, "", text)


def _classify_http(exc: AnymailAPIError, name: str, text: str) -> SendResult:
    status = getattr(exc, "status_code", None)
    response = getattr(exc, "response", None)
    if status is None:
        # No HTTP answer: connect failures sent nothing; timeouts and resets may have.
        cause = _requests_cause(exc)
        if cause is not None and _is_connect_failure(cause):
            return SendResult(Outcome.TRANSIENT, name, "connect", text)
        return SendResult(Outcome.UNKNOWN, name, type(cause).__name__ if cause else "", text)
    retry_after = None
    if response is not None:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if status in (408, 429) or status >= 500 or status in (401, 403):
        # 401/403 are our configuration, not the message: retry (and alert) rather than drop.
        return SendResult(Outcome.TRANSIENT, name, str(status), text, retry_after=retry_after)
    return SendResult(Outcome.PERMANENT, name, str(status), text)


def _requests_cause(exc: BaseException) -> BaseException | None:
    import requests

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, requests.RequestException):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _is_connect_failure(exc: BaseException) -> bool:
    import requests

    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, requests.ConnectionError):
        # NewConnectionError (refused, DNS) means no byte reached the provider.
        text = repr(exc)
        return "NewConnectionError" in text or "Failed to establish" in text
    return False
