from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from notifications.models import DeliveryAttempt, EventType, Message
from notifications.services import LOCALE_RE


class StrictSerializer(serializers.Serializer):
    """Unknown fields are an error, not silently dropped: a typo must not lose data."""

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if isinstance(self.initial_data, dict):
            unknown = sorted(set(self.initial_data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {name: ["Unknown field."] for name in unknown}
                )
        return attrs


class RecipientSerializer(StrictSerializer):
    email = serializers.CharField(max_length=254)
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "format": "email", "maxLength": 254},
            {
                "type": "object",
                "properties": {
                    "email": {"type": "string", "format": "email", "maxLength": 254},
                    "name": {"type": "string", "maxLength": 200},
                },
                "required": ["email"],
                "additionalProperties": False,
            },
        ]
    }
)
class RecipientField(serializers.Field):
    """`"ann@example.com"` or `{"email": "ann@example.com", "name": "Ann"}`."""

    def to_internal_value(self, data: Any) -> dict[str, str]:
        if isinstance(data, str):
            if not data or len(data) > 254:
                raise serializers.ValidationError("Must be an email address (1-254 characters).")
            return {"email": data, "name": ""}
        if isinstance(data, dict):
            nested = RecipientSerializer(data=data)
            if not nested.is_valid():
                raise serializers.ValidationError(nested.errors)
            return {"email": nested.validated_data["email"],
                    "name": nested.validated_data.get("name", "")}
        raise serializers.ValidationError("Must be an email address or {email, name}.")

    def to_representation(self, value: Any) -> Any:
        return value


class EventInputSerializer(StrictSerializer):
    event = serializers.CharField(max_length=100, help_text="Event type key, e.g. order.placed")
    to = RecipientField()
    data = serializers.DictField(required=False, default=dict, help_text="Event data (object).")
    locale = serializers.RegexField(
        LOCALE_RE, max_length=16, required=False, allow_null=True,
        error_messages={"invalid": "Not a language code such as 'en' or 'pt-BR'."},
    )
    send_at = serializers.DateTimeField(required=False, allow_null=True)
    idempotency_key = serializers.CharField(max_length=200, required=False, allow_null=True)

    def validate_send_at(self, value: Any) -> Any:
        if value is None:
            return None
        now = timezone.now()
        skew = timedelta(seconds=settings.NOTIFY_API["SEND_AT_SKEW_SECONDS"])
        horizon = timedelta(days=settings.NOTIFY_API["SEND_AT_HORIZON_DAYS"])
        if value < now - skew:
            raise serializers.ValidationError("Must not be in the past.")
        if value > now + horizon:
            raise serializers.ValidationError(
                f"Must be within {horizon.days} days from now."
            )
        return value


class BatchInputSerializer(StrictSerializer):
    events = serializers.ListField(
        child=serializers.JSONField(), allow_empty=False,
        help_text="Up to NOTIFY_API_BATCH_MAX events, each shaped like a single event.",
    )

    def validate_events(self, value: list[Any]) -> list[Any]:
        limit = settings.NOTIFY_API["BATCH_MAX"]
        if len(value) > limit:
            raise serializers.ValidationError(f"At most {limit} events per batch.")
        return value


class AttemptSerializer(serializers.ModelSerializer):
    error = serializers.SerializerMethodField()

    class Meta:
        model = DeliveryAttempt
        fields = ["number", "started_at", "duration_ms", "outcome", "error"]

    def get_error(self, attempt: DeliveryAttempt) -> str:
        text = f"{attempt.error_class}: {attempt.error_message}" if attempt.error_class else ""
        return text or attempt.error_message


class MessageSerializer(serializers.ModelSerializer):
    """A message as the write endpoints answer it (documentation only: parsing.message_payload)."""

    event = serializers.CharField(source="event_type.key")
    to = serializers.SerializerMethodField()
    send_at = serializers.DateTimeField(source="next_attempt_at")

    class Meta:
        model = Message
        fields = [
            "id", "status", "event", "lane", "priority", "to", "locale", "idempotency_key",
            "attempts", "max_attempts", "send_at", "expires_at", "last_error",
            "dead_reason", "created_at", "updated_at", "sent_at",
        ]

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_to(self, message: Message) -> dict[str, str]:
        return {"email": message.to_email, "name": message.to_name}


class MessageDetailSerializer(MessageSerializer):
    """A message with its subject (rendered from the pinned version) and its attempt log."""

    subject = serializers.CharField(
        allow_null=True, help_text="Rendered from the pinned template version; null if it fails.")
    attempt_log = AttemptSerializer(many=True)

    class Meta(MessageSerializer.Meta):
        fields = [*MessageSerializer.Meta.fields, "subject", "attempt_log"]


class EventTypeSerializer(serializers.ModelSerializer):
    class Meta:
        model = EventType
        fields = ["key", "description", "lane", "priority", "max_attempts", "expiry",
                  "data_schema"]


class ErrorDetailSerializer(serializers.Serializer):
    """code, message and (validation errors only) fields: {field: [reasons]}."""

    def get_fields(self) -> dict[str, serializers.Field]:
        # "fields" is the wire name, but also a Serializer attribute: declare it here instead.
        return {
            "code": serializers.CharField(),
            "message": serializers.CharField(),
            "fields": serializers.DictField(
                child=serializers.ListField(child=serializers.CharField()), required=False
            ),
        }


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


class BatchItemSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    status = serializers.IntegerField(help_text="What a single request would have answered.")
    message = MessageSerializer(required=False)
    error = ErrorDetailSerializer(required=False)


class BatchResultSerializer(serializers.Serializer):
    accepted = serializers.IntegerField()
    rejected = serializers.IntegerField()
    results = BatchItemSerializer(many=True)
