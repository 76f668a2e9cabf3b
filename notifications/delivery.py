"""The consumer side: claim due messages in batches, send outside any transaction, record outcomes.

A drain of one lane:

1. Clears the lane's wake flag, so a message committed from now on enqueues another drain.
2. Claims a batch in one short transaction (priority first, then due time; SKIP LOCKED on
   PostgreSQL, a serialised conditional UPDATE on SQLite): status `processing`, a lease, attempts+1.
3. Renders each message from its pinned template version and data (a render error sends it to
   the DLQ as `render_failed`), then sends with up to NOTIFY_SEND_CONCURRENCY in flight
   (notifications/senders.py), over reused backend connections, no transaction open.
4. Records outcomes as sends finish, every `Sender.flush_every` of them (a quarter of the
   concurrency), with a few statements: `sent`, `retry` (exponential backoff with full jitter,
   never sooner than Retry-After), or `dead` with the reason; one DeliveryAttempt each.
5. Starts no send after its deadline (the time budget): what is still untried then is handed
   back with its attempt refunded, due at once. A send started before the deadline ends within
   the longest send (EMAIL_TIMEOUT / ANYMAIL REQUESTS_TIMEOUT), which is why budget + that must
   stay well under the django-q2 timeout (notifications/checks.py).
6. Loops until nothing is due (waiting a little for retries due within its time budget) or the
   budget is spent. A full batch wakes one more drain so a second worker joins in, and a drain
   that ends with work due wakes the next one.

If the worker dies between 2 and 4, the lease expires and the sweeper hands the message back. A
worker killed at any moment leaves at most NOTIFY_SEND_CONCURRENCY x 1.25 sends unrecorded (those
in flight, plus fewer than a quarter of the concurrency finished and not yet written; one chunk
of SEND_CHUNK on a pipelining backend). Those messages may
have gone out; the sweeper retries them with the same Message-ID.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import socket
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import formataddr
from functools import lru_cache
from typing import Any
from uuid import UUID, uuid4

import psycopg
from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db import connection as db_connection
from django.db.models import Min, Q
from django.utils import timezone

from dlq.signatures import failure_signature
from notifications import events, listener, lookups, totals, transitions, unsubscribe
from notifications.content import message_render, versions_for
from notifications.errors import RENDER, SendResult
from notifications.flow import Gate, ProviderFlow
from notifications.inserts import AttemptRow, insert_attempts
from notifications.lanes import lane_is_paused
from notifications.models import (
    CLAIMABLE,
    DeadReason,
    EventType,
    Message,
    Outcome,
    Status,
)
from notifications.providers import DEFAULT, Provider, configured
from notifications.ratelimit import limiter_for
from notifications.rollup import record_counts
from notifications.senders import Sender
from notifications.suppression import stop_suppressed
from notifications.wakeups import wake_lane, wake_taken
from templates_app.exceptions import TemplateRenderError
from templates_app.rendering import RenderedEmail

logger = logging.getLogger(__name__)

# How often (seconds) an idle drain looks for newly due mail before it ends (one query each).
IDLE_POLL = 0.025

# Columns a drain needs: the email is rendered from `data` and the pinned version at send time.
SEND_FIELDS = (
    "id", "event_type_id", "to_email", "to_name", "data", "template_version_id",
    "lane", "priority", "status", "attempts", "max_attempts", "expires_at",
    "lease_token", "lease_until", "next_attempt_at", "provider", "created_at",
)


def message_id_for(pk: int) -> str:
    """Stable RFC 5322 Message-ID for a message: the same on every retry of it."""
    domain = settings.NOTIFY["MESSAGE_ID_DOMAIN"]
    digest = hashlib.sha256(f"{settings.SECRET_KEY}:{pk}".encode()).hexdigest()[:12]
    return f"<n{pk}.{digest}@{domain}>"


@dataclass
class DrainReport:
    lane: str
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    dead: int = 0
    released: int = 0
    suppressed: int = 0
    batches: int = 0
    paused: bool = False  # ended because an operator paused the lane

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def add(self, other: DrainReport) -> None:
        self.sent += other.sent
        self.retried += other.retried
        self.dead += other.dead
        self.released += other.released
        self.suppressed += other.suppressed


# --- claiming -------------------------------------------------------------------------------------

def claim_batch(lane: str, limit: int, *, provider: str | None = None, unpinned: bool = True,
                fresh_first: bool = False) -> list[Message]:
    """Claim up to `limit` due messages of `lane` for this worker alone.

    With several providers, `provider` names the one they will go to: only messages pinned to it
    (and, if `unpinned`, those pinned to none) are claimed. `fresh_first` prefers messages never
    tried (a half-open probe: a message should not pay for more than one probe of an outage).
    """
    now = timezone.now()
    token = uuid4()
    lease_until = now + timedelta(seconds=settings.NOTIFY["LEASE_SECONDS"])
    if db_connection.vendor == "postgresql":
        rows = transitions.claim_due(
            lane, limit, token=token, lease_until=lease_until, now=now, fields=_row_fields(),
            provider=provider, unpinned=unpinned, fresh_first=fresh_first)
        return [_message_from_row(row) for row in rows]
    order = ("attempts",) if fresh_first else ()
    with transaction.atomic():
        due = Message.objects.filter(lane=lane, status__in=CLAIMABLE, next_attempt_at__lte=now)
        if provider is not None:
            due = due.filter(Q(provider=provider) | Q(provider="") if unpinned
                             else Q(provider=provider))
        due = due.order_by(*order, "priority", "next_attempt_at", "id").only(*SEND_FIELDS)
        if db_connection.features.has_select_for_update_skip_locked:
            # Rows another drain has locked are skipped, not waited for: no double send, no queue.
            due = due.select_for_update(skip_locked=True)
        claimed = list(due[:limit])
        if not claimed:
            return []
        moved = transitions.claim([r.pk for r in claimed], token=token, lease_until=lease_until)
    if moved != len(claimed):
        # Only possible without row locks; keep exactly the rows this token won.
        won = set(Message.objects.filter(lease_token=token).values_list("pk", flat=True))
        claimed = [r for r in claimed if r.pk in won]
    for message in claimed:
        message.status = Status.PROCESSING
        message.attempts += 1
        message.lease_token = token
        message.lease_until = lease_until
    return claimed


@lru_cache(maxsize=1)
def _row_fields() -> tuple[str, ...]:
    """SEND_FIELDS in the model's field order, the order Model.from_db expects values in."""
    return tuple(f.attname for f in Message._meta.concrete_fields if f.attname in SEND_FIELDS)


@lru_cache(maxsize=1)
def _converted_fields() -> tuple[tuple[int, Any], ...]:
    """Positions in _row_fields() whose raw database value needs the field's conversion."""
    fields = (Message._meta.get_field(name) for name in _row_fields())
    return tuple((i, f) for i, f in enumerate(fields) if hasattr(f, "from_db_value"))


def _message_from_row(row: Sequence[Any]) -> Message:
    values = list(row)
    for index, field in _converted_fields():
        values[index] = field.from_db_value(values[index], None, db_connection)
    return Message.from_db(db_connection.alias, _row_fields(), values)


# --- sending --------------------------------------------------------------------------------------

def _event_key(event_type_id: int) -> str:
    return lookups.cached("event_key", event_type_id, lambda: EventType.objects.values_list(
        "key", flat=True).get(pk=event_type_id))


def build_email(message: Message, rendered: RenderedEmail) -> EmailMultiAlternatives:
    recipient = (
        formataddr((message.to_name, message.to_email)) if message.to_name else message.to_email
    )
    event_key = _event_key(message.event_type_id)
    headers = {"Message-ID": message_id_for(message.pk), "X-Notification-Id": str(message.pk)}
    # List-Unsubscribe (RFC 2369, RFC 8058 one-click) on bulk mail; nothing on transactional.
    headers.update(unsubscribe.headers_for(message))
    email = EmailMultiAlternatives(
        subject=rendered.subject,
        body=rendered.text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[recipient],
        headers=headers,
    )
    email.attach_alternative(rendered.html, "text/html")
    # Anymail passes these to the ESP so its webhooks can be matched back to the message.
    # "notify_event", not "event": SendGrid merges custom args into its event JSON, whose
    # "event" field (the event type) a metadata key of that name would collide with.
    email.metadata = {"notification_id": str(message.pk),  # type: ignore[attr-defined]
                      "notify_event": event_key}
    email.tags = [event_key]  # type: ignore[attr-defined]
    return email


@lru_cache(maxsize=4)
def _worker_name_for(pid: int) -> str:
    return f"{socket.gethostname()}:{pid}"[:100]


def _worker_name() -> str:
    return _worker_name_for(os.getpid())  # keyed by pid: workers are forked from one parent


# --- recording ------------------------------------------------------------------------------------

@dataclass
class Attempted:
    """One claimed message and what trying it came to (a DeliveryAttempt row to be)."""

    message: Message
    result: SendResult
    started_at: datetime
    duration_ms: int
    provider: str = ""  # the provider it was sent to; "" if it never got that far


def backoff_seconds(attempts: int, retry_after: float | None = None) -> float:
    """Exponential backoff with full jitter, never sooner than the provider's Retry-After."""
    base = settings.NOTIFY["RETRY_BASE_SECONDS"]
    cap = settings.NOTIFY["RETRY_CAP_SECONDS"]
    delay = random.uniform(0, min(cap, base * 2 ** max(0, attempts - 1)))
    if retry_after is not None:
        # The provider said when: honour it even above our cap (bounded to a day against junk).
        delay = max(delay, min(retry_after, 86400.0))
    return delay


# What _record_failure returns for a message it scheduled for another try (else the dead reason).
RETRIED = "retried"


def record_outcomes(outcomes: Sequence[Attempted], token: UUID) -> DrainReport:
    """Record what trying one claim's messages came to."""
    report = DrainReport(lane="")
    if not outcomes:
        return report
    now = timezone.now()
    lane = outcomes[0].message.lane  # one claim is one lane
    if _in_one_statement(outcomes):
        return _record_all_sent(outcomes, token, now, lane, report)
    sent_by: dict[str, list[Attempted]] = {}
    for o in outcomes:
        if o.result.outcome == Outcome.SENT:
            sent_by.setdefault(o.provider, []).append(o)
    attempt_rows: list[AttemptRow] = []
    counts: Counter[totals.Key] = Counter()
    # The rollup's counts per provider: (provider, "sent" | "failed" | "dead").
    rolled: Counter[tuple[str, str]] = Counter()
    logged: list[tuple[str, dict[str, Any]]] = []
    log = events.enabled()
    with transaction.atomic():
        for provider, sent in sent_by.items():
            marked = transitions.mark_sent(
                [o.message.pk for o in sent], token=token, provider=provider,
                provider_ids=_provider_ids(sent))
            report.sent += marked
            rolled[(provider, "sent")] += marked
            # What this claim marked: a message whose lease was lost meanwhile was taken back
            # (and counted) by the sweeper, and is counted again when it is sent again.
            counts[(lane, provider, "sent", "")] += marked
        for outcome in outcomes:
            result, provider = outcome.result, outcome.provider
            if result.outcome != Outcome.SENT:
                counts[(lane, provider, "failed", result.outcome)] += 1
                moved = _record_failure(outcome.message, result, token, now, report, provider)
                if moved == RETRIED:
                    counts[(lane, provider, "retried", "")] += 1
                    rolled[(provider, "failed")] += 1
                elif moved:
                    counts[(lane, provider, "dead", moved)] += 1
                    rolled[(provider, "dead")] += 1
            else:
                moved = "sent"
            _observe(counts, outcome, lane, now)
            if log and moved:
                logged.append(_event(outcome, moved, lane))
            attempt_rows.append(_attempt_row(outcome))
        insert_attempts(attempt_rows)
        # Last in the transaction (rollup.record_counts: the lock order every recorder keeps).
        kinds = ("sent", "failed", "dead")
        record_counts(at=now, totals_counts=counts, minutes={
            (lane, provider): {kind: rolled[(provider, kind)] for kind in kinds}
            for provider in {p for p, _ in rolled}})
    if log:  # committed
        _log_chunk(logged, outcomes, report, lane, now)
    return report


def _in_one_statement(outcomes: Sequence[Attempted]) -> bool:
    """Whether `outcomes` may be recorded by _record_all_sent: on PostgreSQL, every email sent
    through one provider."""
    return (db_connection.vendor == "postgresql" and len({o.provider for o in outcomes}) == 1
            and all(o.result.outcome == Outcome.SENT for o in outcomes))


def _record_all_sent(outcomes: Sequence[Attempted], token: UUID, now: datetime, lane: str,
                     report: DrainReport) -> DrainReport:
    """PostgreSQL, a chunk whose every email one provider accepted (nearly every chunk): the
    same records as record_outcomes' transaction, in one statement
    (transitions.mark_sent_recorded)."""
    provider = outcomes[0].provider
    counts: Counter[totals.Key] = Counter()
    for outcome in outcomes:
        _observe(counts, outcome, lane, now)
    report.sent = transitions.mark_sent_recorded(
        [o.message.pk for o in outcomes], token=token, provider=provider,
        provider_ids=_provider_ids(outcomes), attempts=[_attempt_row(o) for o in outcomes],
        counts=counts, sent_key=(lane, provider, "sent", ""), lane=lane, at=now)
    if events.enabled():
        _log_chunk([_event(o, "sent", lane) for o in outcomes], outcomes, report, lane, now)
    return report


def _provider_ids(sent: Sequence[Attempted]) -> dict[int, str]:
    """The ESP ids that differ from our Message-ID (transitions.mark_sent stores only those)."""
    return {o.message.pk: o.result.provider_message_id for o in sent
            if o.result.provider_message_id != message_id_for(o.message.pk)}


def _observe(counts: Counter[totals.Key], outcome: Attempted, lane: str, now: datetime) -> None:
    """The /metrics histograms of one outcome: its queue time if sent, its send time if a
    request was made (not a render failure)."""
    if outcome.result.outcome == Outcome.SENT:
        totals.observe(counts, lane, outcome.provider, "queue_ms",
                       int((now - outcome.message.created_at).total_seconds() * 1000))
    if outcome.provider:
        totals.observe(counts, lane, outcome.provider, "send_ms", outcome.duration_ms)


def _attempt_row(outcome: Attempted) -> AttemptRow:
    """The DeliveryAttempt row of one outcome (inserts.ATTEMPT_COLUMNS), cut to the columns'
    lengths."""
    message, result = outcome.message, outcome.result
    return (message.pk, message.attempts, outcome.started_at, outcome.duration_ms,
            str(result.outcome), result.error_class[:200], result.error_code[:40],
            result.error_message, result.provider_message_id[:200], outcome.provider[:40],
            _worker_name()[:100])


def _log_chunk(logged: list[tuple[str, dict[str, Any]]], outcomes: Sequence[Attempted],
               report: DrainReport, lane: str, now: datetime) -> None:
    """The structured log lines of a recorded (committed) chunk."""
    events.emit_all(logged)
    events.emit("drain.chunk", lane=lane, providers=",".join(sorted(
        {o.provider for o in outcomes if o.provider})), messages=len(outcomes),
        sent=report.sent, retried=report.retried, dead=report.dead,
        record_ms=int((timezone.now() - now).total_seconds() * 1000))


def _event(outcome: Attempted, moved: str, lane: str) -> tuple[str, dict[str, Any]]:
    result = outcome.result
    fields: dict[str, Any] = {
        "message_id": outcome.message.pk, "lane": lane, "provider": outcome.provider,
        "outcome": str(result.outcome), "attempt": outcome.message.attempts,
        "duration_ms": outcome.duration_ms}
    if result.outcome == Outcome.SENT:
        fields["provider_message_id"] = result.provider_message_id
        return "message.sent", fields
    fields["error_code"] = result.error_code
    if moved == RETRIED:
        return "message.retry", fields
    fields["dead_reason"] = moved
    return "message.dead", fields


def _record_failure(
    message: Message, result: SendResult, token: UUID, now: datetime, report: DrainReport,
    provider: str,
) -> str:
    """Retry or kill one message whose try failed; returns RETRIED, the dead reason, or "" if
    another process had moved it."""
    error = f"{result.error_class}: {result.error_message}".strip(": ")
    reason: DeadReason
    if result.outcome == Outcome.PERMANENT:
        reason = (DeadReason.RENDER_FAILED if result.error_code == RENDER
                  else DeadReason.PERMANENT_ERROR)
    elif result.outcome == Outcome.EXPIRED:
        reason = DeadReason.EXPIRED
    elif message.attempts >= message.max_attempts:
        reason = DeadReason.MAX_ATTEMPTS
    else:
        due = now + timedelta(seconds=backoff_seconds(message.attempts, result.retry_after))
        if message.expires_at is not None and due >= message.expires_at:
            reason = DeadReason.EXPIRED
        else:
            # Unknown: the provider may have sent it, so no other provider may.
            pin = provider if result.outcome == Outcome.UNKNOWN else ""
            moved = transitions.schedule_retry(message.pk, token=token, due=due, error=error,
                                               pin=pin)
            report.retried += moved
            return RETRIED if moved else ""
    # From what the DeliveryAttempt row stores (truncated alike), so a backfill from the attempt
    # computes the same signature.
    signature = failure_signature(
        dead_reason=reason, error_class=result.error_class[:200],
        error_code=result.error_code[:40], error_message=result.error_message,
        to_email=message.to_email)
    moved = transitions.kill([message.pk], token=token, reason=reason, error=error,
                             signature=signature)
    report.dead += moved
    return str(reason) if moved else ""


def release_untried(messages: Sequence[Message], token: UUID, *, reason: str) -> int:
    """Hand claimed messages that were never tried back, due at once, refunding the attempt the
    claim counted: nothing was sent, so nothing may be used up. (Due at once even when a
    breaker stopped them: nobody claims for a provider whose breaker is open, and another
    provider may take them now.)"""
    if not messages:
        return 0
    moved = transitions.release(
        [m.pk for m in messages], token=token, reason=reason, refund=True, due=timezone.now(),
    )
    if moved:
        events.emit_on_commit([("message.released", {
            "message_id": m.pk, "lane": m.lane, "provider": "", "outcome": "released",
            "reason": reason}) for m in messages])
    return moved


# --- the drain loop -------------------------------------------------------------------------------

Ready = tuple[Message, RenderedEmail]


def render_batch(messages: Sequence[Message]) -> tuple[list[Ready], list[Attempted]]:
    """Render each message from its pinned version; a render error is a permanent failure."""
    versions = versions_for(messages)
    ready: list[Ready] = []
    failed: list[Attempted] = []
    for message in messages:
        try:
            ready.append((message, message_render(message, versions[message.template_version_id])))
        except TemplateRenderError as exc:
            result = SendResult(Outcome.PERMANENT, error_class="TemplateRenderError",
                                error_code=RENDER, error_message=str(exc))
            failed.append(Attempted(message, result, timezone.now(), 0))
    return ready, failed


def process_batch(sender: Sender, batch: list[Message], flow: ProviderFlow, deadline: float,
                  refill: Callable[[], list[Message]] | None = None, *,
                  provider: str = DEFAULT, probe: bool = False,
                  paused: Callable[[], bool] = lambda: False) -> DrainReport:
    """Send one claimed batch through `provider` (and those `refill()` claims as it ends),
    recording outcomes as sends finish (every `flush_every`) and reporting them to the
    provider's shared flow control, whose answer (breaker open, a hold) this drain obeys.

    Expired messages are not sent. No send starts once the breaker is open (as last seen; a
    `probe` sends its one message regardless), the deadline (time.monotonic()) has passed or an
    operator paused the lane (`paused()`): the rest is handed back untried, its attempt
    refunded. A 429 holds this sender at once and, through the shared state, every other
    worker's.
    """
    report = DrainReport(lane="")
    outcomes: list[Attempted] = []
    failures: list[bool] = []  # for the breaker, since the last report
    throttle = 0.0  # the longest hold a 429 asked for, since the last report
    conf = settings.NOTIFY

    def prepare(claimed: list[Message]) -> list[Ready]:
        now = timezone.now()
        live: list[Message] = []
        for message in claimed:
            if message.expires_at is not None and message.expires_at <= now:
                expired = SendResult(Outcome.EXPIRED,
                                     error_message="expired before it could be sent")
                outcomes.append(Attempted(message, expired, now, 0))
            else:
                live.append(message)
        unexpired = len(live)
        # The suppression list, as it is now: an address suppressed while its message waited
        # is never mailed (one indexed query per claim).
        live = stop_suppressed(live, claimed=True) if live else live
        report.suppressed += unexpired - len(live)
        ready, failed = render_batch(live) if live else ([], [])
        outcomes.extend(failed)
        return ready

    def more() -> list[Ready]:
        claimed = refill() if refill is not None else []
        return prepare(claimed) if claimed else []

    def report_flow() -> None:
        nonlocal failures, throttle
        view = flow.report(failures, throttle=throttle, probe=probe)
        sender.hold(view.hold_for)
        failures, throttle = [], 0.0

    ready = prepare(batch)
    never_sent: list[Message] = []
    sender.hold(flow.hold_for)  # a 429 another worker got, as last seen

    def may_start() -> bool:
        return time.monotonic() < deadline and (probe or not flow.open) and not paused()

    sends = sender.stream(ready, build_email, may_start, more if refill is not None else None)
    for group in sends:
        for index, sent in group:
            message = ready[index][0]
            result = sent.result
            if result is None:
                never_sent.append(message)
                continue
            if result.throttled:  # an answer, not a failure: the provider is up, asks for less
                hold = result.retry_after if result.retry_after is not None \
                    else conf["THROTTLE_SECONDS"]
                throttle = max(throttle, hold)
                sender.hold(hold)
            else:
                failures.append(result.outcome != Outcome.SENT and result.retryable)
            outcomes.append(Attempted(message, result, sent.started_at, sent.duration_ms,
                                      provider))
        if len(outcomes) >= sender.flush_every:  # a crash now loses none of these outcomes
            report.add(_record(outcomes))
            outcomes = []
            if not probe:
                report_flow()
        elif not probe and sum(failures) >= max(1, sender.window // 8):
            # Failures reach the breaker sooner than successes: with few sends in flight (a
            # provider going down shrinks the window to one) each failure counts at once.
            report_flow()
    untried = [m for m, _ in ready[sender.started:]]
    report.add(_record(outcomes))
    report_flow()
    # What stopped the sends: the breaker, a pause, else the deadline.
    report.released = _release(
        untried,
        reason="provider failing: handed back untried (circuit breaker)" if flow.open and not probe
        else "lane paused by an operator: handed back untried" if paused()
        else "drain budget spent before sending: handed back untried")
    report.released += _release(never_sent, reason="connection lost before sending: requeued")
    return report


def _by_claim(messages: Sequence[Any], message_of: Callable[[Any], Message]) -> dict[Any, list]:
    """Group by the claim (lease token) each message came from: a refill is a claim of its own."""
    groups: dict[Any, list] = {}
    for item in messages:
        groups.setdefault(message_of(item).lease_token, []).append(item)
    return groups


def _record(outcomes: Sequence[Attempted]) -> DrainReport:
    report = DrainReport(lane="")
    for token, group in _by_claim(outcomes, lambda o: o.message).items():
        report.add(record_outcomes(group, token))
    return report


def _release(messages: Sequence[Message], *, reason: str) -> int:
    return sum(release_untried(group, token, reason=reason)
               for token, group in _by_claim(messages, lambda m: m).items())


def drain_lane(
    lane: str, *, budget: float | None = None, batch_size: int | None = None
) -> DrainReport:
    """Send due messages of `lane` until none is due or the time budget is spent.

    Each round asks every provider's flow control (notifications/flow.py) whether it may be
    used: the first that may takes the unpinned messages, each takes those pinned to it, and one
    whose breaker is open takes nothing (its messages wait, untouched). A half-open provider
    gets a probe: one message, preferably never tried.
    """
    conf = settings.NOTIFY
    budget = conf["DRAIN_BUDGET_SECONDS"] if budget is None else budget
    batch_size = batch_size or conf["BATCH_SIZE"]
    deadline = time.monotonic() + budget
    report = DrainReport(lane=lane)
    providers = configured()
    several = len(providers) > 1  # with one, pins do not matter: there is nowhere else to go
    flows = {p.name: ProviderFlow(p.name) for p in providers}
    watch = listener.watch(lane)  # None: poll (SQLite, NOTIFY_DRAIN_LISTEN off)
    wake_taken(lane)
    full = False  # the last claim took all it asked for: more may be due, notified or not

    def claim(limit: int, provider: Provider, *, unpinned: bool,
              fresh_first: bool = False) -> list[Message]:
        nonlocal full
        batch = claim_batch(lane, limit, provider=provider.name if several else None,
                            unpinned=unpinned, fresh_first=fresh_first)
        full = len(batch) == limit
        if full and not fresh_first:
            wake_lane(lane)  # more is waiting: let another worker join in
        return batch

    def refill_for(provider: Provider, unpinned: bool) -> Callable[[], list[Message]]:
        def refill() -> list[Message]:
            """The next batch, claimed while this one's last sends are in flight (asked every
            REFILL_POLL while nothing is due: when listening, only after a notification or
            RECHECK_SECONDS; then a one-row index probe first, not a claim)."""
            nonlocal full
            if (time.monotonic() >= deadline or flows[provider.name].open
                    or lane_is_paused(lane)):
                return []
            if watch is not None and not (full or watch.changed()):
                return []
            if not _look(lane, watch):
                full = False  # taken by another drain meanwhile: wait to be told again
                return []
            batch = claim(batch_size, provider, unpinned=unpinned)
            report.batches += bool(batch)
            report.claimed += len(batch)
            return batch
        return refill

    with ExitStack() as stack:
        senders: dict[str, Sender] = {}

        def sender_for(provider: Provider) -> Sender:
            if provider.name not in senders:
                senders[provider.name] = stack.enter_context(Sender(
                    concurrency=conf["SEND_CONCURRENCY"], message_id=message_id_for,
                    limiter=limiter_for(provider.name), connect=provider.connection,
                    name=provider.name))
            return senders[provider.name]

        idle_since: float | None = None
        while time.monotonic() < deadline:
            if lane_is_paused(lane):
                report.paused = True
                break  # lane_resume wakes it again
            gates = [(p, flows[p.name].permit()) for p in providers]
            usable = [(p, gate) for p, gate in gates if gate is not Gate.DENY]
            if not usable:
                # Every provider is down: claim nothing (an outage must not burn attempts).
                wait = min(flows[p.name].wait for p in providers)
                if not _linger(deadline, min(max(wait, 0.05), 1.0)):
                    break
                continue
            first = next((p for p, gate in usable if gate is Gate.ALLOW), None)
            claimed = False
            if watch is not None:
                watch.look()
            for provider, gate in usable:
                probe = gate is Gate.PROBE
                unpinned = probe or provider is first
                batch = claim(1 if probe else batch_size, provider, unpinned=unpinned,
                              fresh_first=probe)
                if not batch:
                    if probe:
                        flows[provider.name].report([], probe=True)  # free the probe
                    continue
                claimed = True
                report.add(process_batch(
                    sender_for(provider), batch, flows[provider.name], deadline,
                    refill=None if probe else refill_for(provider, unpinned),
                    provider=provider.name, probe=probe, paused=lambda: lane_is_paused(lane)))
                report.batches += 1
                report.claimed += len(batch)
            if claimed:
                idle_since = None
                continue
            # Nothing claimable now: wait (cheaply) for something due, or end.
            idle_since = time.monotonic() if idle_since is None else idle_since
            if not _await_due(lane, deadline, idle_since + conf["DRAIN_IDLE_SECONDS"], watch):
                break
    # The budget ran out with work due (messages handed back at the deadline, or never claimed):
    # the next drain starts now, not at the next sweep.
    next_due = None if report.paused else _next_due(lane)
    if next_due is not None and next_due <= timezone.now():
        wake_lane(lane)
    logger.info("drain %s: %s", lane, report.as_dict())
    return report


_DUE_NOW = (
    f'SELECT 1 FROM "{Message._meta.db_table}" WHERE "lane" = %s AND "status" IN '
    f"({', '.join(repr(str(s.value)) for s in CLAIMABLE)}) "
    'AND "next_attempt_at" <= %s LIMIT 1'
)


def _due_now(lane: str) -> bool:
    """Is any message of `lane` due? One probe of the partial claim index, asked by each waiting
    drain when notified (listener.py) or, polling, every few tens of ms (the ORM's version cost
    ~5x the CPU, and a claim ~10x).

    On PostgreSQL a prepared statement on the connection's own psycopg cursor: no SQL text to
    interpolate on our side, none to parse and plan on the server's. The statuses are literals
    in its text, so that the prepared (generic) plan still matches the partial index.
    """
    now = timezone.now()
    conn = connections[DEFAULT_DB_ALIAS]  # once: each lookup through the proxy costs ~5 µs
    if conn.vendor == "postgresql":
        conn.ensure_connection()
        with conn.wrap_database_errors, psycopg.Cursor(conn.connection) as cur:
            cur.execute(_DUE_NOW, (lane, now), prepare=True)
            return cur.fetchone() is not None
    with conn.cursor() as cursor:
        cursor.execute(_DUE_NOW, [lane, now])
        return cursor.fetchone() is not None


def _look(lane: str, watch: listener.Watch | None) -> bool:
    """_due_now, having told `watch` that this look happened (what is notified later is new)."""
    if watch is not None:
        watch.look()
    return _due_now(lane)


def _next_due(lane: str) -> datetime | None:
    return Message.objects.filter(lane=lane, status__in=CLAIMABLE).aggregate(
        due=Min("next_attempt_at")
    )["due"]


def _await_due(lane: str, deadline: float, linger_until: float,
               watch: listener.Watch | None = None) -> bool:
    """Wait until a message of `lane` is due: True to claim again, False to end the drain.

    Until `linger_until` (NOTIFY_DRAIN_IDLE_SECONDS after the drain ran out of work) it waits
    for new mail, so mail that arrives meanwhile goes out over this drain's open connections
    within milliseconds, where a new drain would wait for the broker's poll and open new ones:
    listening (`watch`, PostgreSQL), it sleeps until a wake-up's notification (or
    RECHECK_SECONDS) and then probes once; polling, it probes every IDLE_POLL. After that it
    stays only for a retry due within the budget (picked up here rather than by the next
    sweep), looking at least every second. Something due that could not be claimed (locked by
    another drain, pinned to a provider that is down) is tried again after IDLE_POLL when
    polling, after RECHECK_SECONDS when listening.
    """
    first = True
    due_by_then = False  # a retry falls due during this pause: nobody will notify it
    while True:
        if not first and (watch is None or due_by_then or watch.changed()) and _look(lane, watch):
            return True
        due_by_then = False
        now = time.monotonic()
        if now < linger_until:
            pause = IDLE_POLL
            if watch is not None and watch.listening():
                pause = max(IDLE_POLL, min(linger_until - now, listener.RECHECK_SECONDS,
                                           deadline - now - IDLE_POLL))
        else:
            next_due = _next_due(lane)
            wait = (next_due - timezone.now()).total_seconds() if next_due is not None \
                else float("inf")
            if wait > deadline - now:
                return False
            pause = min(max(wait, IDLE_POLL), 1.0)
            due_by_then = wait <= pause
        if not _linger(deadline, pause, watch):
            return False
        first = False


def _linger(deadline: float, seconds: float, watch: listener.Watch | None = None) -> bool:
    """Sleep `seconds` (less if `watch` hears a wake-up) if the budget allows; False when the
    drain should end instead."""
    if time.monotonic() + seconds >= deadline:
        return False
    if watch is not None:
        watch.wait(seconds)
    else:
        time.sleep(seconds)
    return True
