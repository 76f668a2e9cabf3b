"""Tracking webhook requests shaped like each ESP's own, for Anymail's real views.

Written from each ESP's webhook documentation (Postmark's webhook pages, Mailgun's "event-data"
webhooks, Amazon SES event publishing through SNS, SendGrid's Event Webhook), not from
Anymail's parsers: a payload shaped the way Anymail's code happens to read it would prove
nothing. Each builder takes what identifies the email (our notification id, the ESP's message
id, the recipient), the ESP's event id and when it happened, and returns a `Hook`: the path,
body and headers of one request, as the ESP would post it, signed where the ESP signs.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class Hook:
    """One webhook request: Anymail's tracking path for `esp`, the body and the ESP's headers."""

    esp: str  # the URL segment: postmark, mailgun, amazon_ses, sendgrid
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return f"/anymail/{self.esp}/tracking/"

    def with_body(self, body: bytes) -> Hook:
        """The same request with another body (an altered or malformed one), headers kept."""
        return Hook(self.esp, body, dict(self.headers))


def json_body(value: Any) -> bytes:
    return json.dumps(value).encode()


def basic_auth(secret: str) -> str:
    return "Basic " + base64.b64encode(secret.encode()).decode()


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes


def post(base_url: str, hook: Hook, *, auth: str | None) -> Answer:
    """POST `hook` over real HTTP; `auth` is "user:password" (None: no Authorization header).
    4xx and 5xx answers are returned, not raised: the tests assert on them."""
    headers = dict(hook.headers)
    if auth is not None:
        headers["Authorization"] = basic_auth(auth)
    request = urllib.request.Request(base_url + hook.path, data=hook.body, headers=headers,
                                     method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return Answer(response.status, response.read())
    except urllib.error.HTTPError as err:
        return Answer(err.code, err.read())


def iso(at: datetime, digits: int = 3) -> str:
    """`at` in UTC as ESPs write it: ISO 8601 with a Z and `digits` of the second's fraction
    (Postmark writes 7, SES 3)."""
    at = at.astimezone(UTC)
    fraction = f"{at.microsecond:06d}{'0' * max(0, digits - 6)}"[:digits]
    return at.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if digits else "") + "Z"
