"""Producer-side services: the one way into the queue, and the one home of its rules.

`notify()` (one event) and `notify_many()` (a batch) validate, apply idempotency, pin the
template version, insert and wake the lane on commit; the drain renders the email when it sends
it (notifications/content.py). Every entry point (the API, signals, other apps, commands) calls
these, so an event is accepted or refused, and a key replayed or in conflict, the same way
everywhere; the API only checks that the JSON has the right types and maps the errors to HTTP.

Called inside the caller's transaction notify() is a transactional outbox: if the caller rolls
back, the Message row is gone and the wake-up never fires, so nothing is sent.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Model
from django.utils import timezone
from email_validator import EmailNotValidError

from notifications import events, lookups, transitions
from notifications.addresses import normalize_email
from notifications.audit import audit_record
from notifications.exceptions import (
    IdempotencyConflict,
    InvalidEventData,
    InvalidIdempotencyKey,
    InvalidLocale,
    InvalidRecipient,
    InvalidSendAt,
    NotifyError,
    TemplateUnavailable,
    UnknownEvent,
)
from notifications.inserts import insert_messages, new_message
from notifications.models import (
    AuditAction,
    EventType,
    LaneState,
    Message,
    Producer,
)
from notifications.schemas import validator_for
from notifications.suppression import stop_suppressed, would_stop
from notifications.wakeups import wake_lane_on_commit
from templates_app.exceptions import NoActiveTemplateVersion
from templates_app.models import TemplateVersion
from templates_app.selectors import template_version_active

INTERNAL_PRODUCER = "internal"
_EVENT_TYPE = Message._meta.get_field("event_type")
_PRODUCER = Message._meta.get_field("producer")
_TEMPLATE_VERSION = Message._meta.get_field("template_version")
LOCALE_RE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
# Lengths of the columns they are stored in (a longer value would be a database error).
def _max_length(model: type[Model], name: str) -> int:
    length = getattr(model._meta.get_field(name), "max_length", None)
    if not isinstance(length, int):
        raise TypeError(f"{model.__name__}.{name} has no max_length")
    return length


EVENT_MAX = _max_length(EventType, "key")
KEY_MAX = _max_length(Message, "idempotency_key")
EMAIL_MAX = _max_length(Message, "to_email")
NAME_MAX = _max_length(Message, "to_name")
LOCALE_MAX = _max_length(Message, "locale")


@dataclass
class _Lookups:
    """Per-call cache so a batch of 1,000 looks each event type and template up once."""

    event_types: dict[str, EventType] = field(default_factory=dict)
    versions: dict[tuple[int, str], TemplateVersion] = field(default_factory=dict)

    def event_type(self, key: str) -> EventType:
        if key not in self.event_types:
            found = event_type_for(key)
            if found is None:
                raise UnknownEvent(f"unknown event {key!r}")
            self.event_types[key] = found
        return self.event_types[key]

    def version(self, event_type: EventType, locale: str) -> TemplateVersion:
        cache_key = (event_type.template_id, locale)
        if cache_key not in self.versions:
            self.versions[cache_key] = lookups.cached(
                "version", cache_key, lambda: _template_version(event_type, locale)
            )
        return self.versions[cache_key]


@dataclass
class EventRequest:
    """One event as a producer states it; `notify_many` takes a list of these (or dicts)."""

    event: str
    to: str | Mapping[str, str]
    data: dict[str, Any] = field(default_factory=dict)
    locale: str | None = None
    idempotency_key: str | None = None
    send_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Queued:
    """What enqueueing one event came to: its message, and whether this call created it
    (False: a replay of an earlier request with the same idempotency key and body)."""

    message: Message
    created: bool


def notify(
    *,
    event: str,
    to: str | Mapping[str, str],
    data: Mapping[str, Any] | None = None,
    locale: str | None = None,
    idempotency_key: str | None = None,
    send_at: datetime | None = None,
    producer: Producer | str | None = None,
) -> Message:
    """Queue one email for `event` to `to`. Returns the Message (the existing one on a replay).

    Raises a NotifyError subclass (unknown event, data failing the schema with its path, bad
    address, bad locale, `send_at` naive, in the past or past the horizon, no active template;
    IdempotencyConflict when the key was used with a different request); nothing is written then.
    """
    request = EventRequest(event=event, to=to, data=dict(data or {}), locale=locale,
                           idempotency_key=idempotency_key, send_at=send_at)
    return notify_request(request, producer=producer).message


def notify_request(request: EventRequest, *, producer: Producer | str | None = None) -> Queued:
    """notify() for an EventRequest, saying whether the message was created or replayed."""
    producer_obj = _producer(producer)
    key = _checked_key(request.idempotency_key)
    fingerprint = payload_hash(request) if key else ""
    if key:
        existing = _existing(producer_obj, [key]).get(key)
        if existing is not None:
            return _replayed(existing, fingerprint)
    message = _build(request, producer_obj, _Lookups(), fingerprint)
    try:
        if transaction.get_connection().in_atomic_block or would_stop(message):
            # (A suppressed recipient: the insert and the move to `suppressed` in one
            # transaction, so no drain can claim the message in between.)
            # A savepoint, so a lost race on the idempotency key does not poison the caller's
            # transaction; the winner's row is returned instead.
            with transaction.atomic():
                insert_messages([message])
                live = stop_suppressed([message], claimed=False)
        else:
            insert_messages([message])  # autocommit: one INSERT, no BEGIN/COMMIT around it
            live = [message]  # a suppression added since is caught by the drain's claim
    except IntegrityError:
        existing = _existing(producer_obj, [key]).get(key) if key else None
        if existing is None:
            raise
        return _replayed(existing, fingerprint)
    # A suppressed recipient: the producer still gets its message (and a 202), shown
    # `suppressed` at once; nothing to wake.
    if live:
        wake_lane_on_commit(message.lane)
    return Queued(message, created=True)


def notify_many(
    events: Sequence[EventRequest | Mapping[str, Any]],
    *,
    producer: Producer | str | None = None,
) -> list[Queued | NotifyError]:
    """Queue many events with a few queries. Returns, in order, each item's Queued or its error.

    Items are validated on their own: one bad item does not stop the others. The same rules as
    notify(): a key already stored, or repeated inside the batch, is a replay (`created=False`,
    the same Message) when the request is the same and an IdempotencyConflict when it is not.
    """
    producer_obj = _producer(producer)
    requests = [item if isinstance(item, EventRequest) else _request_from(item) for item in events]
    results: list[Queued | NotifyError | None] = [None] * len(requests)
    fingerprints = [""] * len(requests)
    for index, request in enumerate(requests):
        try:
            if _checked_key(request.idempotency_key):
                fingerprints[index] = payload_hash(request)
        except NotifyError as error:
            results[index] = error
    keys = [r.idempotency_key for i, r in enumerate(requests)
            if fingerprints[i] and r.idempotency_key]
    existing = _existing(producer_obj, keys) if keys else {}

    to_insert: list[tuple[int, Message]] = []
    first_by_key: dict[str, int] = {}
    batch_lookups = _Lookups()
    for index, request in enumerate(requests):
        if results[index] is not None:
            continue
        key = request.idempotency_key
        if key and key in existing:
            results[index] = _replay_result(existing[key], fingerprints[index])
            continue
        if key and key in first_by_key:
            continue  # decided from the first item with this key below
        try:
            message = _build(request, producer_obj, batch_lookups, fingerprints[index])
        except NotifyError as error:
            results[index] = error
            continue
        if key:
            first_by_key[key] = index
        to_insert.append((index, message))

    if to_insert:
        try:
            with transaction.atomic():
                insert_messages([m for _, m in to_insert])
                live = stop_suppressed([m for _, m in to_insert], claimed=False)
        except IntegrityError:
            # Another request stored one of these keys meanwhile: fall back to one at a time,
            # which resolves each conflict to the stored row.
            for index, _message in to_insert:
                try:
                    results[index] = notify_request(requests[index], producer=producer_obj)
                except NotifyError as error:
                    results[index] = error
        else:
            for index, message in to_insert:
                results[index] = Queued(message, created=True)
            for lane in {m.lane for m in live}:
                wake_lane_on_commit(lane)

    for index, request in enumerate(requests):
        if results[index] is None:  # a later item repeating a key of this batch
            first = results[first_by_key[request.idempotency_key]]  # type: ignore[index]
            results[index] = (_replay_result(first.message, fingerprints[index])
                              if isinstance(first, Queued) else first)
    return results  # type: ignore[return-value]


def message_cancel(*, message: Message) -> bool:
    """Cancel a message that has not been sent yet. Returns False if it was too late."""
    return transitions.cancel([message.pk]) == 1


def messages_requeue(*, pks: Iterable[int]) -> int:
    """Send dead messages again with a fresh attempt budget and expiry. Returns how many moved.

    A thin wrapper over the dead letter queue's service (dlq.services.dead_letters_requeue),
    the one code path of every requeue: the transition resets the retry bookkeeping (attempts,
    due time, lease, expiry) and the lane is woken, so the message really goes out again. A
    message that died because its template did not render is re-pinned to the template's version
    active now, so fixing the template and requeueing is enough. Messages that are not dead are
    left as they are and not counted.
    """
    from dlq.services import dead_letters_requeue  # dlq builds on notifications, not the reverse

    return dead_letters_requeue(pks=pks).moved


def messages_cancel(*, pks: Iterable[int], user: Any, reason: str = "") -> int:
    """An operator cancels messages not sent yet; audited (who, how many, why). Returns how
    many were cancelled: the others were sent, dead or cancelled already, and are left as is."""
    return _audited(AuditAction.CANCEL, transitions.cancel, pks=pks, user=user, reason=reason)


def messages_requeue_audited(*, pks: Iterable[int], user: Any, reason: str = "") -> int:
    """An operator requeues dead messages (messages_requeue), audited. Returns how many moved."""
    return _audited(AuditAction.REQUEUE, lambda ids: messages_requeue(pks=ids), pks=pks,
                    user=user, reason=reason)


def _audited(action: AuditAction, move: Callable[[list[int]], int], *, pks: Iterable[int],
             user: Any, reason: str) -> int:
    """`move(ids)` and, if it moved any, one audit entry for them, in one transaction."""
    ids = list(pks)
    with transaction.atomic():
        log = events.enabled()
        before = {pk: (lane, status) for pk, lane, status in Message.objects.filter(
            pk__in=ids).values_list("pk", "lane", "status")} if log else {}
        moved = move(ids)
        if moved:
            audit_record(user=user, action=action, target=f"{moved} message(s)", count=moved,
                         reason=reason, filter={"ids": ids})
        if moved and log:  # one line per message this call moved (its status changed)
            after = dict(Message.objects.filter(pk__in=ids).values_list("pk", "status"))
            name = "message.cancelled" if action == AuditAction.CANCEL else "message.requeued"
            events.emit_on_commit([(name, {
                "message_id": pk, "lane": lane, "provider": "",
                "outcome": name.removeprefix("message."), "user": str(user)})
                for pk, (lane, status) in before.items() if after.get(pk) != status])
    return moved


def ensure_lanes() -> None:
    for lane in settings.LANES:
        LaneState.objects.get_or_create(lane=lane)


# --- helpers --------------------------------------------------------------------------------------

def _producer(producer: Producer | str | None) -> Producer:
    if isinstance(producer, Producer):
        return producer
    name = producer or INTERNAL_PRODUCER
    obj, _ = Producer.objects.get_or_create(name=name)
    return obj


def _existing(producer: Producer, keys: list[str]) -> dict[str, Message]:
    return {
        m.idempotency_key: m
        for m in Message.objects.filter(producer=producer, idempotency_key__in=keys)
        if m.idempotency_key
    }


def _request_from(item: Mapping[str, Any]) -> EventRequest:
    return EventRequest(
        event=item.get("event", ""), to=item.get("to", ""), data=dict(item.get("data") or {}),
        locale=item.get("locale"), idempotency_key=item.get("idempotency_key"),
        send_at=item.get("send_at"),
    )


def _checked_key(key: Any) -> str | None:
    """The idempotency key, or None when there is none; InvalidIdempotencyKey if unusable."""
    if key is None or key == "":
        return None
    if not isinstance(key, str) or not key.strip():
        raise InvalidIdempotencyKey("must be a non-blank string")
    if len(key) > KEY_MAX:
        raise InvalidIdempotencyKey(f"must be at most {KEY_MAX} characters")
    return key


def _replay_result(existing: Message, fingerprint: str) -> Queued | IdempotencyConflict:
    """A stored key's message again: a replay if the request is the same, else a conflict."""
    if existing.payload_hash != fingerprint:
        return IdempotencyConflict(existing)
    return Queued(existing, created=False)


def _replayed(existing: Message, fingerprint: str) -> Queued:
    result = _replay_result(existing, fingerprint)
    if isinstance(result, IdempotencyConflict):
        raise result
    return result


def _build(request: EventRequest, producer: Producer, found: _Lookups,
           fingerprint: str) -> Message:
    """Validate one request and return an unsaved Message pinned to the active template version.

    Every producer-side rule is here (the API only checks JSON types), in the order a producer
    would fix them: event, recipient, data, locale, send_at, template.
    """
    if not isinstance(request.event, str) or not request.event.strip():
        raise UnknownEvent("an event name is required")
    if len(request.event) > EVENT_MAX:
        raise UnknownEvent(f"event names are at most {EVENT_MAX} characters")
    event_type = found.event_type(request.event)
    to_email, to_name = _recipient(request.to)
    data = request.data if isinstance(request.data, dict) else None
    if data is None:
        raise InvalidEventData("must be a JSON object", path="$")
    if event_type.data_schema:
        _check_schema(event_type, data)
    locale = request.locale or settings.LANGUAGE_CODE
    if not isinstance(locale, str) or len(locale) > LOCALE_MAX or not LOCALE_RE.match(locale):
        raise InvalidLocale(f"{locale!r} is not a language code such as 'en' or 'pt-BR'")
    now = timezone.now()
    due = _send_at(request.send_at, now) if request.send_at is not None else now
    version = found.version(event_type, locale)
    message = new_message(  # by column name: assigning related objects costs 4x as much
        event_type_id=event_type.pk,
        producer_id=producer.pk,
        idempotency_key=request.idempotency_key or None,
        # Only a replay compares fingerprints, and only a keyed request can be replayed.
        payload_hash=fingerprint,
        to_email=to_email,
        to_name=to_name,
        locale=locale,
        data=data,
        template_version_id=version.pk,
        lane=event_type.lane,
        priority=event_type.priority,
        max_attempts=event_type.max_attempts,
        next_attempt_at=due,
        expires_at=(due + event_type.expiry) if event_type.expiry else None,
    )
    # ...but callers read message.event_type (and the API its key): no query for that.
    _EVENT_TYPE.set_cached_value(message, event_type)
    _PRODUCER.set_cached_value(message, producer)
    _TEMPLATE_VERSION.set_cached_value(message, version)
    return message


def _send_at(send_at: Any, now: datetime) -> datetime:
    """`send_at` if it is an aware datetime from about now up to the horizon."""
    if not isinstance(send_at, datetime):
        raise InvalidSendAt("must be a datetime")
    if timezone.is_naive(send_at):
        raise InvalidSendAt("must include a time zone")
    conf = settings.NOTIFY
    if send_at < now - timedelta(seconds=conf["SEND_AT_SKEW_SECONDS"]):
        raise InvalidSendAt("Must not be in the past.")
    horizon = timedelta(days=conf["SEND_AT_HORIZON_DAYS"])
    if send_at > now + horizon:
        raise InvalidSendAt(f"Must be within {horizon.days} days from now.")
    return send_at


def payload_hash(request: EventRequest) -> str:
    """Fingerprint of what the producer asked for, to tell a replay from a different request.

    The recipient is hashed in one form, {"email", "name"}, whichever form it was given in (the
    API always passes that form), so an equal request is a replay from every entry point.
    """
    to = request.to
    if isinstance(to, Mapping):
        to = {"email": to.get("email", ""), "name": to.get("name", "") or ""}
    else:
        to = {"email": to, "name": ""}
    body = {
        "event": request.event, "to": to, "data": request.data, "locale": request.locale,
        "send_at": request.send_at.isoformat() if isinstance(request.send_at, datetime)
        else request.send_at,
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def event_type_for(key: str) -> EventType | None:
    """The active event type called `key` (cached per process), or None."""
    return lookups.cached("event_type", key, lambda: _event_type_or_none(key))


def _event_type_or_none(key: str) -> EventType | None:
    return EventType.objects.select_related("template").filter(key=key, is_active=True).first()


def _recipient(to: str | Mapping[str, str]) -> tuple[str, str]:
    if isinstance(to, Mapping):
        email, name = to.get("email", ""), to.get("name", "") or ""
    else:
        email, name = to, ""
    if not isinstance(email, str) or not email:
        raise InvalidRecipient("an email address is required")
    if len(email) > EMAIL_MAX:
        raise InvalidRecipient(f"an email address is at most {EMAIL_MAX} characters")
    if not isinstance(name, str) or "\n" in name or "\r" in name or len(name) > NAME_MAX:
        raise InvalidRecipient(f"name must be one line of at most {NAME_MAX} characters")
    try:
        return normalize_email(email), name
    except EmailNotValidError as exc:
        raise InvalidRecipient(f"{email!r} is not a valid email address: {exc}") from exc


def _check_schema(event_type: EventType, data: dict[str, Any]) -> None:
    # Per event type, not per schema text: serialising the schema to look its validator up cost
    # as much as validating. Cleared with the other lookups when an event type changes.
    validator = lookups.cached("data_validator", event_type.pk, lambda: validator_for(
        json.dumps(event_type.data_schema, sort_keys=True)))
    error = validator.first_error(data)
    if error is not None:
        raise InvalidEventData(error[0], path=error[1])


def _template_version(event_type: EventType, locale: str) -> TemplateVersion:
    try:
        return template_version_active(template=event_type.template, locale=locale)
    except NoActiveTemplateVersion as exc:
        raise TemplateUnavailable(str(exc)) from exc
