"""Ingest API v1: one view per operation; every write goes through notifications.services."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from notifications import lookups, tracking
from notifications.api.authentication import BearerKeyAuthentication, ProducerUser
from notifications.api.errors import Backpressure, Conflict, error_body
from notifications.api.parsing import message_payload, parse_batch, parse_event
from notifications.api.serializers import (
    BatchInputSerializer,
    BatchResultSerializer,
    ErrorSerializer,
    EventInputSerializer,
    EventTypeSerializer,
    MessageDetailSerializer,
    MessageSerializer,
)
from notifications.api.throttling import ProducerRateThrottle
from notifications.exceptions import IdempotencyConflict, NotifyError
from notifications.models import EventType, Message, Producer, Status
from notifications.selectors import lane_is_full
from notifications.services import (
    EventRequest,
    Queued,
    event_type_for,
    message_cancel,
    notify_many,
    notify_request,
)

ERRORS = {
    code: OpenApiResponse(ErrorSerializer, description=text)
    for code, text in {
        400: "Invalid request (fields say which and why)",
        401: "Missing or invalid API key",
        403: "Event type not allowed for this key",
        409: "Idempotency key reused with a different body",
        413: "Body too large",
        429: "Rate limited, or the lane is past its high-water mark (see Retry-After)",
    }.items()
}
IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key", str, OpenApiParameter.HEADER, required=False,
    description="Same as the body's idempotency_key; a replay returns the original message.",
)


class ProducerAPIView(APIView):
    authentication_classes = [BearerKeyAuthentication]
    throttle_classes = [ProducerRateThrottle]

    @property
    def producer(self) -> Producer:
        user = self.request.user
        assert isinstance(user, ProducerUser)  # permission_classes guarantee it
        return user.producer

    def allowed_events(self) -> frozenset[str]:
        producer = self.producer
        return lookups.cached("allowed_events", producer.pk, lambda: frozenset(
            producer.allowed_event_types.filter(is_active=True).values_list("key", flat=True)
        ))

    def own_messages(self) -> QuerySet[Message]:
        return Message.objects.filter(producer=self.producer).select_related(
            "event_type", "template_version")


def _check_lane(lane: str) -> None:
    """Backpressure: refuse new work for a lane past its high-water mark (bulk sheds first)."""
    if lane_is_full(lane):
        raise Backpressure(f"The {lane} lane is past its high-water mark; retry later.",
                           int(settings.NOTIFY_API["RETRY_AFTER"].get(lane, 30)))


class EventCreateView(ProducerAPIView):
    @extend_schema(
        operation_id="events_create", request=EventInputSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={202: MessageSerializer, 200: MessageSerializer, **ERRORS},
        summary="Publish one event",
    )
    def post(self, request: Request) -> Response:
        if not isinstance(request.data, dict):
            raise ValidationError({"non_field_errors": ["Body must be a JSON object."]})
        body = dict(request.data)
        header_key = request.headers.get("Idempotency-Key")
        if header_key is not None:
            if body.get("idempotency_key") not in (None, header_key):
                raise ValidationError({"idempotency_key": [
                    "Differs from the Idempotency-Key header; send one or make them equal."]})
            body["idempotency_key"] = header_key
        event_request, errors = parse_event(body)
        if event_request is None:
            raise ValidationError(errors)
        if event_request.event not in self.allowed_events():
            raise PermissionDenied(f"This key may not send {event_request.event!r}.")
        event_type = event_type_for(event_request.event)
        if event_type is not None:
            _check_lane(event_type.lane)
        try:
            queued = notify_request(event_request, producer=self.producer)
        except IdempotencyConflict as error:
            raise Conflict(error.message, code=error.code) from error
        except NotifyError as error:
            raise ValidationError({error.field: [error.message]}) from error
        return Response(message_payload(queued.message), status=status.HTTP_202_ACCEPTED
                        if queued.created else status.HTTP_200_OK)


class EventBatchView(ProducerAPIView):
    @extend_schema(
        operation_id="events_batch", request=BatchInputSerializer,
        responses={202: BatchResultSerializer, **ERRORS}, summary="Publish up to 1,000 events",
    )
    def post(self, request: Request) -> Response:
        items = parse_batch(request.data)
        results: list[dict[str, Any] | None] = [None] * len(items)
        valid: list[tuple[int, EventRequest]] = []
        allowed = self.allowed_events()
        for index, item in enumerate(items):
            event_request, errors = parse_event(item)
            if event_request is None:
                results[index] = _item_error(index, 400, "invalid", "The event is invalid.",
                                             errors)
            elif event_request.event not in allowed:
                results[index] = _item_error(index, 403, "forbidden",
                                             f"This key may not send {event_request.event!r}.")
            else:
                valid.append((index, event_request))
        event_types = [event_type_for(key) for key in {r.event for _, r in valid}]
        for lane in sorted({e.lane for e in event_types if e is not None}):
            _check_lane(lane)
        outcomes = notify_many([r for _, r in valid], producer=self.producer)
        for (index, _request), outcome in zip(valid, outcomes, strict=True):
            results[index] = _item_result(index, outcome)
        accepted = sum(1 for r in results if r and r["status"] in (200, 202))
        return Response(
            {"accepted": accepted, "rejected": len(items) - accepted, "results": results},
            status=status.HTTP_202_ACCEPTED,
        )


def _item_error(index: int, code: int, kind: str, message: str,
                fields: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"index": index, "status": code, **error_body(kind, message, fields)}


def _item_result(index: int, outcome: Queued | NotifyError) -> dict[str, Any]:
    """What a single request would have answered, as a batch item."""
    if isinstance(outcome, IdempotencyConflict):
        return _item_error(index, 409, outcome.code, outcome.message)
    if isinstance(outcome, NotifyError):
        return _item_error(index, 400, outcome.code, outcome.message,
                           {outcome.field: [outcome.message]})
    return {"index": index, "status": 202 if outcome.created else 200,
            "message": message_payload(outcome.message)}


def message_detail(message: Message) -> dict[str, Any]:
    """MessageDetailSerializer's shape: the payload with the attempts, the newest of the
    tracking history and its total (one query, a count only past the cap; detail only: the
    write endpoints' answers stay cheap) and, when suppressed, the entry that stopped it."""
    payload = message_payload(message, detail=True)
    events, total = tracking.recent_history(message.pk)
    payload["tracking"] = [
        {"event": e.event_type, "at": e.occurred_at or e.received_at, "esp": e.esp,
         "bounce": e.bounce or None, "description": e.description}
        for e in events
    ]
    payload["tracking_total"] = total
    row = message.suppressed_by if message.status == Status.SUPPRESSED else None
    payload["suppressed"] = {"reason": row.reason, "scope": row.scope or None} if row else None
    return payload


class MessageDetailView(ProducerAPIView):
    @extend_schema(operation_id="messages_retrieve",
                   responses={200: MessageDetailSerializer, 401: ERRORS[401],
                              404: OpenApiResponse(ErrorSerializer)},
                   summary="A message with its attempts and tracking history")
    def get(self, request: Request, pk: int) -> Response:
        message = self.own_messages().select_related("suppressed_by").filter(pk=pk).first()
        if message is None:
            raise NotFound("No such message.")
        return Response(message_detail(message))


class MessageCancelView(ProducerAPIView):
    @extend_schema(operation_id="messages_cancel", request=None,
                   responses={200: MessageDetailSerializer, 401: ERRORS[401],
                              404: OpenApiResponse(ErrorSerializer),
                              409: OpenApiResponse(ErrorSerializer)},
                   summary="Cancel a message that is not sent yet")
    def post(self, request: Request, pk: int) -> Response:
        message = self.own_messages().filter(pk=pk).first()
        if message is None:
            raise NotFound("No such message.")
        if not message_cancel(message=message):
            message.refresh_from_db()
            raise Conflict(
                f"The message is {message.status}; only pending or retry messages can be "
                "cancelled.", code="not_cancellable",
            )
        message.refresh_from_db()
        return Response(message_detail(message))


class EventTypeListView(ProducerAPIView):
    @extend_schema(operation_id="event_types_list",
                   responses={200: EventTypeSerializer(many=True), 401: ERRORS[401]},
                   summary="Event types this key may send, with their data schemas")
    def get(self, request: Request) -> Response:
        event_types = EventType.objects.filter(key__in=self.allowed_events()).order_by("key")
        return Response(EventTypeSerializer(event_types, many=True).data)
