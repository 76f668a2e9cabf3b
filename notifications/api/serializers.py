"""The wire format, for the OpenAPI schema only: no request is validated with these classes.

drf-spectacular reads them to describe each operation (fields, types, lengths, patterns). What a
request really is checked against lives in one place per concern: JSON types in parsing.py,
everything else in notifications.services (so in-process notify() refuses exactly what the API
refuses). The limits shown here are read from the same constants the services enforce.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from notifications.models import (
    Bounce,
    DeliveryAttempt,
    EventType,
    Message,
    SuppressionReason,
)
from notifications.services import (
    EMAIL_MAX,
    EVENT_MAX,
    KEY_MAX,
    LOCALE_MAX,
    LOCALE_RE,
    NAME_MAX,
)
from notifications.tracking import HISTORY_SHOWN


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "format": "email", "maxLength": EMAIL_MAX},
            {
                "type": "object",
                "properties": {
                    "email": {"type": "string", "format": "email", "maxLength": EMAIL_MAX},
                    "name": {"type": "string", "maxLength": NAME_MAX},
                },
                "required": ["email"],
                "additionalProperties": False,
            },
        ]
    }
)
class RecipientField(serializers.Field):
    """`"ann@example.com"` or `{"email": "ann@example.com", "name": "Ann"}`."""


class EventInputSerializer(serializers.Serializer):
    """One event. Unknown fields are refused (a typo must not lose data)."""

    event = serializers.CharField(max_length=EVENT_MAX,
                                  help_text="Event type key, e.g. order.placed")
    to = RecipientField()
    # The API field is named `data` (shadowing Serializer.data: this class only documents it).
    data = serializers.DictField(  # type: ignore[assignment]
        required=False, default=dict, help_text="Event data (object).")
    locale = serializers.RegexField(LOCALE_RE, max_length=LOCALE_MAX, required=False,
                                    allow_null=True)
    send_at = serializers.DateTimeField(
        required=False, allow_null=True,
        help_text="When to send; from now up to NOTIFY_SEND_AT_HORIZON_DAYS ahead (UTC if no "
                  "offset is given).")
    idempotency_key = serializers.CharField(max_length=KEY_MAX, required=False, allow_null=True)


class BatchInputSerializer(serializers.Serializer):
    events = serializers.ListField(
        child=serializers.JSONField(), allow_empty=False,
        help_text="Up to NOTIFY_API_BATCH_MAX events, each shaped like a single event.",
    )


class AttemptSerializer(serializers.ModelSerializer):
    error = serializers.SerializerMethodField()

    class Meta:
        model = DeliveryAttempt
        fields = ["number", "started_at", "duration_ms", "outcome", "provider", "error"]

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


class TrackingSerializer(serializers.Serializer):
    """One thing the provider's tracking webhooks said about the message after accepting it."""

    event = serializers.CharField(
        help_text="Anymail's normalized event type: delivered, bounced, complained, deferred, "
                  "opened, clicked, unsubscribed, ...")
    at = serializers.DateTimeField(
        help_text="When it happened, as the provider says; else when the webhook came.")
    esp = serializers.CharField(help_text="The provider that reported it.")
    bounce = serializers.ChoiceField(choices=Bounce.choices, allow_null=True,
                                     help_text="hard or soft for a bounce; else null.")
    description = serializers.CharField(allow_blank=True,
                                        help_text="The provider's explanation, if any.")


class SuppressedSerializer(serializers.Serializer):
    """Why a suppressed message was never sent: the suppression-list entry that stopped it."""

    reason = serializers.ChoiceField(choices=SuppressionReason.choices)
    scope = serializers.CharField(
        allow_null=True, help_text="The category the recipient is suppressed for; null: every "
                                   "email.")


class MessageDetailSerializer(MessageSerializer):
    """A message with its subject (rendered from the pinned version), its attempt log, its
    tracking history and, when suppressed, why."""

    subject = serializers.CharField(
        allow_null=True, help_text="Rendered from the pinned template version; null if it fails.")
    attempt_log = AttemptSerializer(many=True)
    tracking = TrackingSerializer(
        many=True, help_text=f"What the provider reported after accepting it: the newest "
                             f"{HISTORY_SHOWN} events, oldest first.")
    tracking_total = serializers.IntegerField(
        min_value=0, help_text=f"How many events the provider reported in all; more than in "
                               f"`tracking` when over {HISTORY_SHOWN}.")
    suppressed = SuppressedSerializer(
        allow_null=True, help_text="Set when the status is suppressed (and the entry is still "
                                   "known); else null.")

    class Meta(MessageSerializer.Meta):
        fields = [*MessageSerializer.Meta.fields, "subject", "attempt_log", "tracking",
                  "tracking_total", "suppressed"]


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
