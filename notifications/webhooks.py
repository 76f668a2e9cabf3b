"""Anymail's webhook views, mounted only behind their authentication.

Anymail checks HTTP basic auth against ANYMAIL["WEBHOOK_SECRET"] (and an ESP's signature where
it has one: Mailgun's signing key, SendGrid's verification key); with no secret set it accepts
every request and only warns. Here a missing secret refuses every webhook with a 403 that says
which setting to set, so a forgotten secret cannot let anyone post bounces and complaints.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import URLPattern, URLResolver
from django.views.decorators.csrf import csrf_exempt


def webhook_secret_set() -> bool:
    return bool(getattr(settings, "ANYMAIL", {}).get("WEBHOOK_SECRET"))


def _guarded(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @wraps(view)
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not webhook_secret_set():
            return JsonResponse(
                {"error": "webhooks_disabled",
                 "detail": "Set ANYMAIL_WEBHOOK_SECRET (user:password, the basic auth your "
                           "ESP's webhook URL carries) to accept ESP webhooks."}, status=403)
        return view(request, *args, **kwargs)

    return csrf_exempt(guarded)


def require_webhook_secret(
        patterns: list[URLPattern | URLResolver]) -> list[URLPattern | URLResolver]:
    """Copies of `patterns` with each view wrapped by the secret check."""
    return [URLPattern(p.pattern, _guarded(p.callback), p.default_args, p.name)
            if isinstance(p, URLPattern) else p for p in patterns]
