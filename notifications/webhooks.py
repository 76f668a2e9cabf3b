"""Anymail's webhook views, mounted only behind their authentication, answering 400 for a
payload they cannot read.

Anymail checks HTTP basic auth against ANYMAIL["WEBHOOK_SECRET"] (and an ESP's signature where
it has one: Mailgun's signing key, SendGrid's verification key); with no secret set it accepts
every request and only warns. Here a missing secret refuses every webhook with a 403 that says
which setting to set, so a forgotten secret cannot let anyone post bounces and complaints.

Anymail's parsers index into the posted JSON as the ESP documents it, so a body that is not
JSON, or JSON without the fields they read, raises (KeyError, ValueError, ...; SES's parser an
AnymailAPIError) and Django answers 500, which an ESP retries for days and an operator is
paged for. Each view here is a subclass whose request checks and parsing turn those into a
400 with what was wrong (after basic auth passed: an unauthenticated caller learns nothing
about payloads). Only parsing is covered: the events' receiver (notifications/tracking.py)
still fails with a 500 on a database error, which the ESP should retry.

The views of ESPs that sign their webhooks (Mailgun, Postal, Mandrill, MailerSend, Unisender
Go) refuse to be built without the signing key, which Django turned into a 500 for anyone
posting to the URL of an ESP this deployment does not use; they answer 403 saying which
setting is missing, like a missing secret.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from typing import Any

from anymail.exceptions import AnymailAPIError, AnymailConfigurationError
from anymail.webhooks.base import AnymailBasicAuthMixin
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase, JsonResponse
from django.urls import URLPattern, URLResolver
from django.views import View
from django.views.decorators.csrf import csrf_exempt

logger = logging.getLogger(__name__)

# What Anymail's parsers raise on a payload that lacks what the ESP's documentation promises.
_UNREADABLE = (ValueError, KeyError, TypeError, AttributeError, IndexError, OverflowError,
               AnymailAPIError)


class MalformedPayload(Exception):
    """The webhook's body could not be read as the ESP's payload."""


class NotConfigured(Exception):
    """The ESP's webhook view cannot work without a setting this deployment lacks."""


def webhook_secret_set() -> bool:
    return bool(getattr(settings, "ANYMAIL", {}).get("WEBHOOK_SECRET"))


def _readable(view_class: type[View]) -> type[View]:
    """`view_class` with unreadable payloads raised as MalformedPayload."""

    class Readable(view_class):  # type: ignore[valid-type,misc]
        def __init__(self, **kwargs: Any) -> None:
            try:
                super().__init__(**kwargs)
            except AnymailConfigurationError as err:
                raise NotConfigured(str(err)) from err

        def run_validators(self, request: HttpRequest) -> None:
            try:
                super().run_validators(request)
            except AnymailConfigurationError as err:  # Mandrill's key is checked here
                raise NotConfigured(str(err)) from err
            except _UNREADABLE as err:
                # Some ESPs' checks read the body before basic auth is checked (in MRO order):
                # the caller must prove who it is before it hears what was wrong.
                if isinstance(self, AnymailBasicAuthMixin):
                    AnymailBasicAuthMixin.validate_request(self, request)
                raise MalformedPayload(f"{type(err).__name__}: {err}") from err

        def parse_events(self, request: HttpRequest) -> list[Any]:
            try:
                return super().parse_events(request)
            except _UNREADABLE as err:
                raise MalformedPayload(f"{type(err).__name__}: {err}") from err

    Readable.__name__ = Readable.__qualname__ = view_class.__name__
    Readable.__module__ = view_class.__module__
    return Readable


def _guarded(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    view_class = getattr(view, "view_class", None)
    if view_class is not None:
        view = _readable(view_class).as_view(**getattr(view, "view_initkwargs", {}))

    @wraps(view)
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not webhook_secret_set():
            return JsonResponse(
                {"error": "webhooks_disabled",
                 "detail": "Set ANYMAIL_WEBHOOK_SECRET (user:password, the basic auth your "
                           "ESP's webhook URL carries) to accept ESP webhooks."}, status=403)
        try:
            return view(request, *args, **kwargs)
        except NotConfigured as err:
            logger.warning("webhook %s: not configured (%s)", request.path, err)
            return JsonResponse({"error": "webhook_not_configured", "detail": str(err)[:300]},
                                status=403)
        except MalformedPayload as err:
            logger.warning("webhook %s: unreadable payload (%s)", request.path, err)
            return JsonResponse({"error": "malformed_payload", "detail": str(err)[:300]},
                                status=400)

    return csrf_exempt(guarded)


def require_webhook_secret(
        patterns: list[URLPattern | URLResolver]) -> list[URLPattern | URLResolver]:
    """Copies of `patterns` with each view wrapped by the secret check and the payload check."""
    return [URLPattern(p.pattern, _guarded(p.callback), p.default_args, p.name)
            if isinstance(p, URLPattern) else p for p in patterns]
