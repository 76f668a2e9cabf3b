from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from notifications.models import ApiKey, Producer
from notifications.producers import api_key_authenticate


class ProducerUser:
    """What request.user is for an API call: the producer behind the key."""

    is_authenticated = True
    is_anonymous = False

    def __init__(self, producer: Producer) -> None:
        self.producer = producer

    def __str__(self) -> str:
        return self.producer.name


class BearerKeyAuthentication(BaseAuthentication):
    """`Authorization: Bearer ntf_...`: a producer's API key."""

    keyword = b"bearer"

    def authenticate(self, request: Request) -> tuple[ProducerUser, ApiKey] | None:
        header = get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword:
            return None
        if len(header) != 2:
            raise AuthenticationFailed("Authorization header must be 'Bearer <token>'.")
        try:
            token = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise AuthenticationFailed("Invalid API key.") from None
        key = api_key_authenticate(token)
        if key is None:
            raise AuthenticationFailed("Invalid or revoked API key.")
        return ProducerUser(key.producer), key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class BearerKeyScheme(OpenApiAuthenticationExtension):
    target_class = "notifications.api.authentication.BearerKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "description": "A producer API key."}
