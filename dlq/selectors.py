"""Reading the dead letter queue: one filter for the admin, the command and the operations task,
the grouped view, and the dry-run preview of a requeue or discard.

Every query starts from `status='dead'`, so it reads the dead rows (the status indexes and the
partial signature index), never the whole Message table.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, Max, Min, Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from dlq.signatures import recipient_domain
from notifications.delivery import message_id_for
from notifications.models import (
    ACCEPTED,
    DeadReason,
    DeliveryAttempt,
    EventType,
    Message,
    Outcome,
    Status,
)
from notifications.suppression import blocking


class InvalidFilter(ValueError):
    """A filter value that cannot be used; the message names the field."""


# Why a requeue leaves a dead letter where it is (the preview and the operation count them).
class Skip:
    EXPIRED = "expired"
    SUPPRESSED = "suppressed"
    ALREADY_SENT = "already_sent"

    LABELS = {
        EXPIRED: "past its expiry (created + the event type's expiry is past)",
        SUPPRESSED: "recipient suppressed",
        ALREADY_SENT: "an equivalent message was already sent",
    }


# Attempts whose email may have gone out although no "sent" was recorded.
MAYBE_SENT = (Outcome.UNKNOWN, Outcome.LEASE_EXPIRED)

_MESSAGE_ID = re.compile(r"^<?n(\d+)\.[0-9a-f]{12}@[^>\s]+>?$")
_SIGNATURE = re.compile(r"^[0-9a-f]{1,64}$")
CHUNK = 1000


@dataclass(frozen=True)
class DeadLetterFilter:
    """Which dead letters to show or act on. Empty fields do not filter. `pks` is a selection.

    `since`/`until` bound when the message died (its last update, which for a dead row is the
    kill); `q` searches recipient, id, idempotency key and Message-ID.
    """

    reason: str = ""
    lane: str = ""
    event_type: str = ""
    domain: str = ""
    signature: str = ""
    since: datetime | None = None
    until: datetime | None = None
    q: str = ""
    pks: tuple[int, ...] = ()

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> DeadLetterFilter:
        """Build and check a filter from strings (a query string, command options, stored JSON).
        Raises InvalidFilter naming the bad field; unknown keys are ignored."""
        def text(name: str) -> str:
            value = params.get(name)
            if isinstance(value, list | tuple):
                value = value[-1] if value else ""
            return str(value).strip() if value is not None else ""

        reason, lane = text("reason"), text("lane")
        if reason and reason not in DeadReason.values:
            raise InvalidFilter(f"reason: {reason!r} is not one of {', '.join(DeadReason.values)}")
        if lane and lane not in settings.LANES:
            raise InvalidFilter(f"lane: {lane!r} is not one of {', '.join(settings.LANES)}")
        event_type = text("event_type")
        if event_type and not EventType.objects.filter(key=event_type).exists():
            raise InvalidFilter(f"event_type: no event type {event_type!r}")
        signature = text("signature").lower()
        if signature and not _SIGNATURE.match(signature):
            raise InvalidFilter(f"signature: {signature!r} is not a failure signature (hex)")
        domain = text("domain").lower().lstrip("@")
        if len(domain) > 254 or any(c.isspace() for c in domain):
            raise InvalidFilter(f"domain: {domain!r} is not a domain")
        since = _when(text("since"), "since", end=False)
        until = _when(text("until"), "until", end=True)
        if since and until and since > until:
            raise InvalidFilter("since: must not be after until")
        raw_pks = params.get("pks") or ()
        if isinstance(raw_pks, str):
            raw_pks = [p for p in raw_pks.split(",") if p.strip()]
        try:
            pks = tuple(sorted({int(p) for p in raw_pks}))
        except (TypeError, ValueError):
            raise InvalidFilter("pks: must be message ids (whole numbers)") from None
        if any(p <= 0 or p >= 2**63 for p in pks):
            raise InvalidFilter("pks: must be message ids (whole numbers)")
        q = text("q")[:300]
        return cls(reason=reason, lane=lane, event_type=event_type, domain=domain,
                   signature=signature, since=since, until=until, q=q, pks=pks)

    def to_params(self) -> dict[str, Any]:
        """The non-empty fields as JSON-friendly values (from_params reads them back)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if not value:
                continue
            if isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    def with_pks(self, pks: Iterable[int]) -> DeadLetterFilter:
        return replace(self, pks=tuple(sorted(set(pks))))

    @property
    def is_empty(self) -> bool:
        return not self.to_params()

    def describe(self) -> str:
        params = self.to_params()
        if "pks" in params:
            params["pks"] = f"{len(self.pks)} selected"
        return ", ".join(f"{k}={v}" for k, v in params.items()) or "all dead letters"

    def queryset(self, base: QuerySet[Any] | None = None) -> QuerySet[Any]:
        """The matching dead letters, from `base` (e.g. the admin's DeadLetter queryset)."""
        rows = (Message.objects.all() if base is None else base).filter(status=Status.DEAD)
        if self.reason:
            rows = rows.filter(dead_reason=self.reason)
        if self.lane:
            rows = rows.filter(lane=self.lane)
        if self.event_type:
            rows = rows.filter(event_type__key=self.event_type)
        if self.domain:
            rows = rows.filter(to_email__iendswith="@" + self.domain)
        if self.signature:
            rows = rows.filter(failure_signature=self.signature)
        if self.since:
            rows = rows.filter(updated_at__gte=self.since)
        if self.until:
            rows = rows.filter(updated_at__lte=self.until)
        if self.pks:
            rows = rows.filter(pk__in=self.pks)
        if self.q:
            rows = rows.filter(search_q(self.q))
        return rows


def _when(value: str, name: str, *, end: bool) -> datetime | None:
    if not value:
        return None
    try:
        day = parse_date(value) if len(value) <= 10 else None
        parsed = _day_bound(day, end=end) if day else parse_datetime(value)
        if parsed is None:
            raise ValueError
    except ValueError:
        raise InvalidFilter(
            f"{name}: {value!r} is not a date (YYYY-MM-DD) or a date and time") from None
    if timezone.is_naive(parsed):
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _day_bound(day: date, *, end: bool) -> datetime:
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start + timedelta(days=1) - timedelta(microseconds=1) if end else start


def search_q(term: str) -> Q:
    """Recipient (part of the address), id, idempotency key or Message-ID."""
    term = term.strip()
    found = _MESSAGE_ID.match(term)
    if found:
        pk = int(found.group(1))
        if pk < 2**63 and message_id_for(pk) == (term if term.startswith("<") else f"<{term}>"):
            return Q(pk=pk)
    condition = Q(to_email__icontains=term) | Q(idempotency_key=term)
    if term.isdigit() and int(term) < 2**63:
        condition |= Q(pk=int(term))
    return condition


# --- groups ---------------------------------------------------------------------------------------

@dataclass
class Group:
    signature: str
    count: int
    first_seen: datetime
    last_seen: datetime
    sample: Message
    sample_error_code: str
    lanes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        """What the group is, from its sample: the dead reason, the provider code, the error."""
        parts = [self.sample.get_dead_reason_display() or "dead"]
        if self.sample_error_code:
            parts.append(self.sample_error_code)
        parts.append(recipient_domain(self.sample.to_email))
        error = self.sample.last_error
        parts.append(error[:160] + ("…" if len(error) > 160 else ""))
        return " · ".join(p for p in parts if p)


def dead_letter_groups(flt: DeadLetterFilter | None = None, *, limit: int = 200) -> list[Group]:
    """Dead letters grouped by failure signature, biggest group first."""
    rows = (flt or DeadLetterFilter()).queryset().order_by()
    stats = list(
        rows.values("failure_signature")
        .annotate(count=Count("id"), first_seen=Min("updated_at"), last_seen=Max("updated_at"),
                  sample=Max("id"))
        .order_by("-count", "failure_signature")[:limit])
    samples = Message.objects.in_bulk([s["sample"] for s in stats])
    codes = _last_attempt_codes(samples)
    return [Group(signature=s["failure_signature"], count=s["count"],
                  first_seen=s["first_seen"], last_seen=s["last_seen"],
                  sample=samples[s["sample"]], sample_error_code=codes.get(s["sample"], ""))
            for s in stats if s["sample"] in samples]


def _last_attempt_codes(pks: Iterable[int]) -> dict[int, str]:
    codes: dict[int, str] = {}
    for message_id, code in (DeliveryAttempt.objects.filter(message_id__in=list(pks))
                             .order_by("message_id", "number", "id")
                             .values_list("message_id", "error_code")):
        codes[message_id] = code  # the last one wins
    return codes


def last_attempts(pks: Iterable[int]) -> dict[int, DeliveryAttempt]:
    """The last DeliveryAttempt of each message (for the signature backfill)."""
    out: dict[int, DeliveryAttempt] = {}
    for attempt in DeliveryAttempt.objects.filter(message_id__in=list(pks)).order_by(
            "message_id", "number", "id"):
        out[attempt.message_id] = attempt
    return out


# --- preview --------------------------------------------------------------------------------------

def suppressed_rows(rows: list[Message]) -> set[int]:
    """Those of `rows` (to_email, event_type_id) the suppression list stops (the rule of
    notifications/suppression.py: bounced, complained, unsubscribed from their category)."""
    return set(blocking(rows))


def may_have_been_sent(pks: Iterable[int]) -> set[int]:
    """Those of `pks` with an attempt whose outcome is unknown (a timeout after sending, a lost
    worker): the email may have gone out, and a requeue may send it twice."""
    return set(DeliveryAttempt.objects.filter(message_id__in=list(pks), outcome__in=MAYBE_SENT)
               .values_list("message_id", flat=True).distinct())


ROW_FIELDS = ("id", "lane", "event_type_id", "to_email", "payload_hash", "data", "created_at",
              "dead_reason", "locale", "template_version_id")


def skip_reasons(rows: list[Message], *, include_expired: bool,
                 now: datetime | None = None) -> dict[int, str]:
    """Why a requeue would leave each of `rows` dead (rows not in the answer go). Needs
    ROW_FIELDS."""
    now = now or timezone.now()
    expiries = _expiries()
    skips: dict[int, str] = {}
    if not include_expired:
        for row in rows:
            expiry = expiries.get(row.event_type_id)
            if expiry is not None and row.created_at + expiry <= now:
                skips[row.pk] = Skip.EXPIRED
    rest = [r for r in rows if r.pk not in skips]
    suppressed = suppressed_rows(rest)
    for row in rest:
        if row.pk in suppressed:
            skips[row.pk] = Skip.SUPPRESSED
    rest = [r for r in rest if r.pk not in skips]
    for pk in _already_sent(rest):
        skips[pk] = Skip.ALREADY_SENT
    return skips


def _expiries() -> dict[int, timedelta]:
    return {pk: expiry for pk, expiry in
            EventType.objects.filter(expiry__isnull=False).values_list("id", "expiry")
            if expiry is not None}


def _already_sent(rows: list[Message]) -> set[int]:
    """Rows for which a message of the same event type to the same recipient with the same
    request (payload hash when both have one, else the same data) was sent."""
    if not rows:
        return set()
    sent: dict[tuple[int, str], list[tuple[str, Any]]] = {}
    for et, email, phash, data in (
            Message.objects.filter(status__in=ACCEPTED, to_email__in={r.to_email for r in rows},
                                   event_type_id__in={r.event_type_id for r in rows})
            .values_list("event_type_id", "to_email", "payload_hash", "data").iterator()):
        sent.setdefault((et, email), []).append((phash, data))
    found = set()
    for row in rows:
        for phash, data in sent.get((row.event_type_id, row.to_email), ()):
            if (row.payload_hash and phash == row.payload_hash) or data == row.data:
                found.add(row.pk)
                break
    return found


@dataclass
class Preview:
    """What acting on a filter would do: per lane how many would move, how many would be
    skipped and why, and how many may have been sent already."""

    kind: str
    matching: int = 0
    per_lane: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    may_have_been_sent: int = 0

    @property
    def acted(self) -> int:
        return sum(self.per_lane.values())

    @property
    def skipped_rows(self) -> list[tuple[str, str, int]]:
        return [(key, Skip.LABELS.get(key, key), n) for key, n in sorted(self.skipped.items())]


def iter_chunks(rows: QuerySet[Message], *, size: int = CHUNK, after: int = 0,
                upto: int | None = None) -> Iterator[list[Message]]:
    """`rows` in id order, `size` at a time (keyset pagination: each chunk is an index range)."""
    while True:
        page = rows.filter(pk__gt=after)
        if upto is not None:
            page = page.filter(pk__lte=upto)
        chunk = list(page.order_by("pk").only(*ROW_FIELDS)[:size])
        if not chunk:
            return
        yield chunk
        after = chunk[-1].pk


def preview(flt: DeadLetterFilter, *, kind: str, include_expired: bool = False) -> Preview:
    """The dry run of a requeue (`kind="requeue"`) or discard of the dead letters of `flt`.
    A discard skips nothing: it only retires rows."""
    result = Preview(kind=kind)
    per_lane: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    now = timezone.now()
    for chunk in iter_chunks(flt.queryset()):
        result.matching += len(chunk)
        skips = skip_reasons(chunk, include_expired=include_expired, now=now) \
            if kind == "requeue" else {}
        skipped.update(skips.values())
        per_lane.update(r.lane for r in chunk if r.pk not in skips)
        result.may_have_been_sent += len(may_have_been_sent(r.pk for r in chunk
                                                            if r.pk not in skips))
    result.per_lane = dict(sorted(per_lane.items()))
    result.skipped = dict(skipped)
    return result
