"""What happens after the provider accepts an email: its tracking webhooks, through Anymail.

Anymail's tracking views (`/anymail/<esp>/tracking/`, mounted in project/urls.py behind its
webhook authentication) parse each ESP's payload into normalized AnymailTrackingEvents and send
the `anymail.signals.tracking` signal; `on_tracking` below receives them. Per event:

1. Match the message: by the `notification_id` metadata we attached when sending (delivery.py's
   build_email; ESPs echo metadata back), else by the ESP's message id (stored by mark_sent),
   and only if the event's recipient is the message's.
2. Apply its effect, in one transaction with storing it:
   - `delivered`, `bounced`, `complained` move the message (transitions.deliver / bounce /
     complain, which never move it down: sent < delivered < bounced soft < hard < complained);
   - a hard bounce or a complaint suppresses the address for every email, a soft bounce does
     once SOFT_BOUNCE_LIMIT of them came within SOFT_BOUNCE_DAYS, an `unsubscribed` event
     suppresses the message's category (notifications/suppression.py);
   - anything else (deferred, opened, clicked, ...) is recorded only.
3. Store it once: TrackingEvent is unique per (ESP, dedupe key), the ESP's event id or, where
   it has none, a hash of message, type, recipient and time. A replay hits the constraint and
   its transaction (effects included) rolls back: nothing changes.

An event whose message is unknown, or not yet `sent` (the webhook can outrun the drain's
recording of the send), is kept with `applied=False`; `tracking_catch_up`, run every minute,
matches and applies those for a day, each less often the more it failed (`catch_up_at`,
`catch_up_tries`), then gives up on it (kept, counted). A few queries per event; the receiver
never raises on odd payloads (an ESP retries a 500 for days), only on a database failure, which
it should retry.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import timedelta
from typing import Any

from anymail.signals import AnymailTrackingEvent
from anymail.signals import EventType as AnymailEventType
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models.functions import Coalesce
from django.utils import timezone

from notifications import events, suppression, transitions
from notifications.models import (
    ACCEPTED,
    Bounce,
    Message,
    Status,
    SuppressionReason,
    TrackingEvent,
)

logger = logging.getLogger(__name__)

CATCH_UP_HOURS = 24  # an unapplied event is tried for this long after it came, then given up
CATCH_UP_MAX_GAP = timedelta(hours=1)  # the longest wait between two of its tries
_MESSAGE_FIELDS = ("id", "lane", "status", "to_email", "event_type_id", "provider")

# The raw event types of each ESP (as Anymail passes them on in esp_event) that mean the
# address is gone for good; other bounces are soft.
_HARD_POSTMARK = {"HardBounce", "BadEmailAddress", "ManuallyDeactivated", "Blocked"}


def bounce_kind(esp: str, event: AnymailTrackingEvent) -> Bounce:
    """Hard or soft, from the ESP's raw event where it says, else from Anymail's reason."""
    raw = event.esp_event if isinstance(event.esp_event, dict) else {}
    name = esp.lower().replace(" ", "")
    if name == "postmark" and "Type" in raw:
        hard = raw.get("Type") in _HARD_POSTMARK or bool(raw.get("Inactive"))
        return Bounce.HARD if hard else Bounce.SOFT
    if name == "amazonses" and isinstance(raw.get("bounce"), dict):
        return Bounce.HARD if raw["bounce"].get("bounceType") == "Permanent" else Bounce.SOFT
    if name == "sendgrid" and raw.get("event") == "bounce":
        return Bounce.SOFT if raw.get("type") == "blocked" else Bounce.HARD
    if name == "mailgun":
        data = raw.get("event-data", raw)
        severity = data.get("severity") if isinstance(data, dict) else None
        if severity is not None:
            return Bounce.HARD if severity == "permanent" else Bounce.SOFT
    return Bounce.HARD if event.reject_reason in ("bounced", "invalid") else Bounce.SOFT


def on_tracking(sender: Any, event: AnymailTrackingEvent, esp_name: str,
                **kwargs: Any) -> None:
    """The anymail.signals.tracking receiver (connected in NotificationsConfig.ready)."""
    record_event(esp_name, event)


def record_event(esp: str, event: AnymailTrackingEvent) -> TrackingEvent | None:
    """Store `event` and apply it. Returns the new row, or None for a replay."""
    metadata = event.metadata if isinstance(event.metadata, dict) else {}
    notification_id = _text(metadata.get("notification_id"))[:40]
    provider_id = _text(event.message_id)[:200]
    recipient = _text(event.recipient)[:254]
    event_type = _text(event.event_type or AnymailEventType.UNKNOWN)[:20]
    kind = bounce_kind(esp, event) if event_type == AnymailEventType.BOUNCED else ""
    if event_type == AnymailEventType.REJECTED and event.reject_reason in ("bounced", "invalid"):
        kind = Bounce.HARD  # refused for a known-bad address: as good as a hard bounce
    row = TrackingEvent(
        esp=esp[:40], dedupe_key=_dedupe_key(event, event_type, provider_id, notification_id,
                                             recipient),
        event_type=event_type, bounce=kind, notification_id=notification_id,
        provider_message_id=provider_id, recipient=recipient, occurred_at=event.timestamp,
        reject_reason=_text(event.reject_reason)[:40],
        description=_text(event.description), mta_response=_text(event.mta_response),
        raw=_jsonable(event.esp_event),
    )
    message = _match(notification_id, provider_id, recipient)
    try:
        with transaction.atomic():
            if message is not None:
                row.message_id, row.lane = message.pk, message.lane
                row.applied = _apply(row, message)
            else:
                row.applied = False
            if not row.applied:
                row.catch_up_at = timezone.now()  # into tracking_catch_up's queue
            row.save(force_insert=True)
    except IntegrityError:
        logger.info("tracking: replay of %s %s ignored", esp, row.dedupe_key)
        return None
    if message is None:
        logger.info("tracking: %s %s for unknown message (%s / %s) kept", esp, event_type,
                    notification_id or "-", provider_id or "-")
    return row


def _dedupe_key(event: AnymailTrackingEvent, event_type: str, provider_id: str,
                notification_id: str, recipient: str) -> str:
    if event.event_id:
        basis = f"id|{event.event_id}|{event_type}"
    else:
        when = event.timestamp.isoformat() if event.timestamp else ""
        basis = f"fields|{provider_id}|{notification_id}|{recipient.lower()}|{event_type}|{when}"
    return hashlib.sha256(basis.encode()).hexdigest()


def _text(value: Any) -> str:
    """`value` as text without NUL characters: PostgreSQL's text and jsonb refuse them, and a
    refused insert would answer 500, which the ESP retries for days."""
    return str(value or "").replace("\x00", "")


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    return value


def _jsonable(raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    try:
        value = _without_nul(json.loads(json.dumps(raw, default=str)))
    except (TypeError, ValueError):
        return {"repr": repr(raw)[:5000]}
    return value if isinstance(value, dict) else {"value": value}


def _match(notification_id: str, provider_id: str, recipient: str) -> Message | None:
    found = None
    if notification_id.isascii() and notification_id.isdigit() and len(notification_id) < 19:
        found = Message.objects.only(*_MESSAGE_FIELDS).filter(pk=int(notification_id)).first()
    if found is None and provider_id:
        found = Message.objects.only(*_MESSAGE_FIELDS).filter(
            provider_message_id=provider_id).exclude(provider_message_id="").first()
    if found is None:
        return None
    if recipient and suppression.normalize(recipient) != suppression.normalize(found.to_email):
        # Not ours after all (another sender on the ESP account reusing ids): keep it unmatched.
        return None
    return found


def _apply(row: TrackingEvent, message: Message, *, effects: bool = True) -> bool:
    """The event's effect on its message and (with `effects`) the suppression list. False when
    the message is not accepted yet (the webhook came before the drain recorded the send): try
    again later, then without `effects` (done once already)."""
    kind = row.event_type
    if not effects:
        return _move(row, message)
    source = f"{row.esp} {kind}" + (f" ({row.bounce})" if row.bounce else "")
    if kind == AnymailEventType.UNSUBSCRIBED:
        category = suppression.kind_of(message.event_type_id).category
        suppression.suppress(email=message.to_email, reason=SuppressionReason.UNSUBSCRIBE,
                             scope=category, source=source, message_id=message.pk)
        return True
    moves = kind in (AnymailEventType.DELIVERED, AnymailEventType.COMPLAINED) or bool(row.bounce)
    if not moves:
        return True  # recorded only
    if kind == AnymailEventType.COMPLAINED:
        suppression.suppress(email=message.to_email, reason=SuppressionReason.COMPLAINT,
                             source=source, message_id=message.pk)
    elif row.bounce == Bounce.HARD:
        suppression.suppress(email=message.to_email, reason=SuppressionReason.HARD_BOUNCE,
                             source=source, message_id=message.pk,
                             note=(row.description or row.mta_response)[:500])
    elif row.bounce == Bounce.SOFT:
        _count_soft_bounce(row, message, source)
    return _move(row, message)


def _move(row: TrackingEvent, message: Message) -> bool:
    kind = row.event_type
    if kind not in (AnymailEventType.DELIVERED, AnymailEventType.COMPLAINED) and not row.bounce:
        return True
    if message.status not in ACCEPTED:
        return False
    if kind == AnymailEventType.DELIVERED:
        moved, name = transitions.deliver(message.pk), "message.delivered"
    elif kind == AnymailEventType.COMPLAINED:
        moved, name = transitions.complain(message.pk), "message.complained"
    else:
        moved = transitions.bounce(
            message.pk, kind=Bounce(row.bounce),
            error=f"{row.bounce} bounce: {row.description or row.mta_response}".strip()[:1000])
        name = "message.bounced"
    if moved:
        events.emit_on_commit([(name, {
            "message_id": message.pk, "lane": message.lane, "provider": message.provider,
            "outcome": str(kind), "bounce": row.bounce, "esp": row.esp})])
    return True


def _count_soft_bounce(row: TrackingEvent, message: Message, source: str) -> None:
    conf = settings.NOTIFY_DELIVERABILITY
    limit = conf["SOFT_BOUNCE_LIMIT"]
    if not limit:
        return
    since = timezone.now() - timedelta(days=conf["SOFT_BOUNCE_DAYS"])
    earlier = TrackingEvent.objects.filter(
        bounce=Bounce.SOFT, message__to_email=message.to_email, received_at__gte=since,
    ).exclude(dedupe_key=row.dedupe_key).count()
    if earlier + 1 >= limit:
        suppression.suppress(email=message.to_email, reason=SuppressionReason.SOFT_BOUNCES,
                             source=source, message_id=message.pk,
                             note=f"{earlier + 1} soft bounces in {conf['SOFT_BOUNCE_DAYS']} days")


def catch_up_gap(tries: int) -> timedelta:
    """How long after its `tries`-th failed try an event is tried again: at the next run after
    the first (the drain records a send within seconds), then 1, 3, 7, 15, 31 minutes, then
    hourly. Run every minute, that is ~30 tries in CATCH_UP_HOURS instead of ~1,440."""
    return min(timedelta(minutes=2 ** min(max(tries, 1) - 1, 20) - 1), CATCH_UP_MAX_GAP)


def tracking_catch_up(*, limit: int = 500) -> int:
    """Match and apply events kept unapplied (unknown message, or not yet sent when they came).
    Returns how many were applied now.

    1. Take the `limit` events whose `catch_up_at` is due, the longest waiting first (the
       partial index tracking_catch_up_idx holds only the waiting ones).
    2. Match and apply each as record_event would have (its effects only once: an event
       matched before, when its message was not yet sent, did them then).
    3. One that still fails waits catch_up_gap(tries) and goes to the back of the queue, so
       the events that came after it get their turn: a backlog of events that never match
       cannot hold back a newer one. Past CATCH_UP_HOURS after it came it is given up on
       (`catch_up_at` cleared): kept, with its tries counted, for the admin to show.
    """
    now = timezone.now()
    done = 0
    failed: dict[tuple[int, bool], list[int]] = {}  # (tries, given up) -> ids
    for row in TrackingEvent.objects.filter(catch_up_at__lte=now).defer("raw").order_by(
            "catch_up_at", "id")[:limit]:
        tries = row.catch_up_tries + 1
        deadline = row.received_at + timedelta(hours=CATCH_UP_HOURS)
        message = _match(row.notification_id, row.provider_message_id, row.recipient)
        if message is None:
            failed.setdefault((tries, now + catch_up_gap(tries) > deadline), []).append(row.pk)
            continue
        with transaction.atomic():
            applied = _apply(row, message, effects=row.message_id is None)
            later = None if applied else now + catch_up_gap(tries)
            if later is not None and later > deadline:
                later = None
                logger.info("tracking: %s %s #%s never applied; given up after %s tries",
                            row.esp, row.event_type, row.pk, tries)
            TrackingEvent.objects.filter(pk=row.pk).update(
                message_id=message.pk, lane=message.lane, applied=applied,
                catch_up_tries=tries, catch_up_at=later)
        done += applied
    for (tries, given_up), ids in failed.items():
        TrackingEvent.objects.filter(pk__in=ids).update(
            catch_up_tries=tries, catch_up_at=None if given_up else now + catch_up_gap(tries))
    gave_up = sum(len(ids) for (_, given_up), ids in failed.items() if given_up)
    if gave_up:
        logger.info("tracking: %s event(s) for unknown messages given up after %s hours",
                    gave_up, CATCH_UP_HOURS)
    return done


# When an event happened: as the ESP says, else when its webhook came (some ESPs send no time).
# Ordering by occurred_at alone put the undated events first on SQLite and last on PostgreSQL
# (where NULLs sort), out of order with the time the history shows for them.
EVENT_TIME = Coalesce("occurred_at", "received_at")


# How many of a message's tracking events its API detail and admin page show: the newest. A
# message opened or clicked thousands of times must not make either answer unbounded.
HISTORY_SHOWN = 50


def history(message_id: int) -> list[TrackingEvent]:
    """All of a message's tracking events, oldest first."""
    return list(TrackingEvent.objects.filter(message_id=message_id).order_by(
        EVENT_TIME, "received_at", "id"))


def recent_history(message_id: int, *,
                   limit: int = HISTORY_SHOWN) -> tuple[list[TrackingEvent], int]:
    """A message's newest `limit` tracking events, oldest first (the API's and the admin's
    history), and how many it has in all. One query, and a COUNT only when there are more."""
    newest = list(TrackingEvent.objects.filter(message_id=message_id).order_by(
        EVENT_TIME.desc(), "-received_at", "-id")[:limit + 1])
    total = len(newest) if len(newest) <= limit else \
        TrackingEvent.objects.filter(message_id=message_id).count()
    return newest[:limit][::-1], total


TRACKED_STATUSES = (Status.DELIVERED, Status.BOUNCED, Status.COMPLAINED)
