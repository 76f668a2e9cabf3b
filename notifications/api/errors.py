"""One error shape for every API error:

    {"error": {"code": "invalid", "message": "...", "fields": {"data": ["$.x: ..."]}}}

`fields` is present for validation errors only. Throttling and backpressure answers carry a
`Retry-After` header.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

CODES = {
    exceptions.NotAuthenticated: "unauthenticated",
    exceptions.AuthenticationFailed: "unauthenticated",
    exceptions.PermissionDenied: "forbidden",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.ParseError: "malformed_body",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.Throttled: "rate_limited",
    exceptions.ValidationError: "invalid",
}


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"

    def __init__(self, message: str, code: str = "conflict") -> None:
        super().__init__(message, code)
        self.error_code = code


class Backpressure(exceptions.APIException):
    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = "lane_full"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.wait = retry_after


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"


def error_body(code: str, message: str, fields: dict[str, Any] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if fields:
        error["fields"] = fields
    return {"error": error}


def handle(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge("Request body is larger than the limit.")
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    response = exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return response
    code = getattr(exc, "error_code", None) or next(
        (c for cls, c in CODES.items() if isinstance(exc, cls)), exc.default_code
    )
    if isinstance(exc, exceptions.ValidationError):
        fields = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        response.data = error_body(code, "The request is invalid; see fields.", flatten(fields))
    else:
        response.data = error_body(code, str(exc.detail))
    if isinstance(exc, Backpressure):
        response["Retry-After"] = str(exc.wait)
    return response


def flatten(value: Any, prefix: str = "") -> dict[str, list[str]]:
    """Error trees to {"field.sub": ["reason", ...]}: one level, lists of strings."""
    out: dict[str, list[str]] = {}
    if isinstance(value, dict):
        for key, sub in value.items():
            out.update(flatten(sub, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(value, list):
        for index, sub in enumerate(value):
            if isinstance(sub, (dict, list)):
                out.update(flatten(sub, f"{prefix}[{index}]" if isinstance(sub, list) else prefix))
            else:
                out.setdefault(prefix or "non_field_errors", []).append(str(sub))
    else:
        out.setdefault(prefix or "non_field_errors", []).append(str(value))
    return out


def json_error(status_code: int, code: str, message: str) -> JsonResponse:
    return JsonResponse(error_body(code, message), status=status_code)
