"""The email providers a drain may send through, in order of preference.

By default there is one, named "default": Django's EMAIL_BACKEND with its settings (ANYMAIL,
EMAIL_HOST, ...). With EMAIL_BACKENDS=primary,secondary there are several (project/env.py parses
them): each a backend path and options passed to that backend as keyword arguments, which every
Anymail backend (server_token, api_key, api_url, ...) and Django's SMTP backend (host, port,
username, ...) prefer over the global settings. A drain sends through the first whose circuit
breaker lets it (notifications/flow.py), so when the primary is down the next one takes over.

A message whose outcome on a provider was unknown (a timeout after the request went out) is
pinned to it (Message.provider) and only ever sent through that one again: the first may have
delivered it, and only it can recognise the retry as the same email.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.mail import get_connection

DEFAULT = "default"


@dataclass(frozen=True)
class Provider:
    name: str
    backend: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def connection(self) -> Any:
        """A new, unopened backend instance for this provider."""
        return get_connection(self.backend, **self.options)


def configured() -> list[Provider]:
    """Every provider in order of preference (read at call time: tests change the settings)."""
    listed = getattr(settings, "EMAIL_PROVIDERS", None)
    if listed:
        return [Provider(p["NAME"], p["BACKEND"], dict(p["OPTIONS"])) for p in listed]
    return [Provider(DEFAULT, settings.EMAIL_BACKEND)]
