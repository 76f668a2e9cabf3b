from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from notifications.api.errors import json_error


class ApiBodyLimitMiddleware:
    """413 before reading a body larger than NOTIFY_API_MAX_BODY_BYTES on /api/ (JSON shape)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith("/api/"):
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                return json_error(400, "malformed_body", "Content-Length is not a number.")
            limit = settings.NOTIFY_API["MAX_BODY_BYTES"]
            if length > limit:
                return json_error(413, "payload_too_large",
                                  f"Request body is larger than {limit} bytes.")
        return self.get_response(request)
