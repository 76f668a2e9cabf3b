"""The message lifecycle: ONE table of transitions, one function per transition, and the only code
that writes `status`.

Each function is a conditional UPDATE by primary key whose rows must be in one of the
transition's SOURCES (`_move`; on PostgreSQL `mark_sent` and `claim_due` are plain SQL), that
sets every field the transition's meaning needs, so no caller can apply half of one: a release
always says whether it refunds the attempt, a kill always has a DeadReason, a requeue always
resets the retry bookkeeping. The row count says how many rows this caller actually moved; a row
another worker moved first is not matched, so two workers can never both move one message.
Moves out of `processing` also match the claim's lease token: a worker whose lease expired and
whose message was claimed again cannot record over the new claim.

The lifecycle diagram in the docs (`manage.py lifecycle_diagram`) is generated from TRANSITIONS.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from django.db import connection, transaction
from django.db.models import Case, CharField, F, Field, Q, Value, When
from django.db.models.functions import Concat
from django.db.models.lookups import In
from django.utils import timezone

from dlq.signatures import failure_signature
from notifications import totals
from notifications.inserts import AttemptRow, attempt_arrays, attempts_sql
from notifications.models import Bounce, DeadReason, DeliveryAttempt, Message, Outcome, Status
from notifications.rollup import add_sent_sql, minute_param


@dataclass(frozen=True)
class Transition:
    sources: tuple[Status, ...]
    target: Status
    label: str


TRANSITIONS: dict[str, Transition] = {
    "claim": Transition((Status.PENDING, Status.RETRY), Status.PROCESSING,
                        "drain claims (due), attempts + 1, lease"),
    "mark_sent": Transition((Status.PROCESSING,), Status.SENT, "provider accepted"),
    "schedule_retry": Transition(
        (Status.PROCESSING,), Status.RETRY,
        "transient/unknown error, attempts left (backoff, and unknown pins the provider)"
    ),
    "release": Transition(
        (Status.PROCESSING,), Status.RETRY,
        "handed back untried (breaker open, deadline, lost connection), attempt refunded"
    ),
    "lease_expired": Transition(
        (Status.PROCESSING,), Status.RETRY,
        "worker lost, the sweeper hands it back, attempt counted",
    ),
    "kill": Transition((Status.PROCESSING,), Status.DEAD, "with a DeadReason (permanent_error, "
                       "max_attempts, expired, render_failed)"),
    "cancel": Transition((Status.PENDING, Status.RETRY), Status.CANCELLED, "cancelled"),
    "requeue": Transition((Status.DEAD,), Status.PENDING,
                          "operator requeues from DLQ (fresh attempts and expiry)"),
    "discard": Transition((Status.DEAD,), Status.CANCELLED,
                          "operator discards from DLQ (dead_reason kept as history)"),
    "suppress": Transition((Status.PENDING, Status.RETRY, Status.PROCESSING), Status.SUPPRESSED,
                           "recipient on the suppression list (at ingest or claim, never sent)"),
    # What the ESP's tracking webhooks report later (notifications/tracking.py). Precedence:
    # sent < delivered < bounced soft < bounced hard < complained; nothing moves down.
    "deliver": Transition((Status.SENT,), Status.DELIVERED, "webhook reports delivered"),
    "bounce": Transition((Status.SENT, Status.DELIVERED, Status.BOUNCED), Status.BOUNCED,
                         "webhook reports a bounce (soft or hard, a soft one may turn hard)"),
    "complain": Transition((Status.SENT, Status.DELIVERED, Status.BOUNCED), Status.COMPLAINED,
                           "webhook reports a spam complaint"),
}

LEASE_LOST = "worker lost while sending (lease expired); the email may have been sent"


def _move(name: str, where: Q, **fields: Any) -> int:
    """Apply transition `name` to the rows matching `where` that are in one of its sources.

    Every caller names its rows by primary key, and the planner must find them that way. Written
    as `status IN (...)`, the source condition let PostgreSQL (statistics: `processing` is rare)
    scan the status index for EVERY in-flight row and filter by id: one email's mark_sent read all
    the rows a bulk burst had in flight. As an expression over the column (Django's Concat with
    '': `COALESCE(status, '') || ...`, the same test for a NOT NULL column) no index can serve it;
    it is checked on the rows the primary key found.
    """
    transition = TRANSITIONS[name]
    return Message.objects.filter(where, _status_in(transition.sources)).update(
        status=transition.target, updated_at=timezone.now(), **fields
    )


def _status_in(statuses: Iterable[Status]) -> In:
    return In(Concat(F("status"), Value(""), output_field=CharField()),
              [status.value for status in statuses])


def _claimed(pks: Iterable[int], token: UUID) -> Q:
    return Q(pk__in=list(pks), lease_token=token)


def claim(pks: Iterable[int], *, token: UUID, lease_until: datetime) -> int:
    """pending/retry -> processing for this worker alone: a lease, its token, one more attempt."""
    return _move("claim", Q(pk__in=list(pks)), lease_token=token, lease_until=lease_until,
                 attempts=F("attempts") + 1)


def claim_due(lane: str, limit: int, *, token: UUID, lease_until: datetime, now: datetime,
              fields: tuple[str, ...], provider: str | None = None, unpinned: bool = True,
              fresh_first: bool = False) -> list[tuple[Any, ...]]:
    """PostgreSQL: the `claim` transition of up to `limit` due messages of `lane` in ONE
    statement (an UPDATE of a SELECT ... FOR UPDATE SKIP LOCKED), returning `fields` of the rows
    it moved, most urgent first. The same fields are set as by `claim`.

    One round trip in autocommit instead of four (BEGIN, SELECT, UPDATE, COMMIT), and SQL text
    built once per shape: the ORM's version cost ~4 ms of CPU per claim, which a transactional
    drain (a claim per email or two) paid per email.
    """
    transition = TRANSITIONS["claim"]
    sql = _claim_due_sql(fields, provider is not None, unpinned, fresh_first)
    params: list[Any] = [transition.target.value, timezone.now(), token, lease_until, lane,
                         *[source.value for source in transition.sources], now]
    if provider is not None:
        params.append(provider)
    params.append(limit)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    order = [fields.index(f) for f in (("attempts",) if fresh_first else ())
             + ("priority", "next_attempt_at", "id")]
    return sorted(rows, key=lambda row: [row[i] for i in order])


def _column(name: str) -> str:
    field = Message._meta.get_field(name)
    if not isinstance(field, Field) or not field.column:
        raise ValueError(f"{name} is not a column of Message")
    return field.column


@functools.cache
def _claim_due_sql(fields: tuple[str, ...], by_provider: bool, unpinned: bool,
                   fresh_first: bool) -> str:
    q = connection.ops.quote_name
    table = q(Message._meta.db_table)
    columns = [_column(f) for f in fields]
    pinned = ""
    if by_provider:
        pinned = (f"AND ({q('provider')} = %s OR {q('provider')} = '') " if unpinned
                  else f"AND {q('provider')} = %s ")
    order = ", ".join(q(c) for c in (["attempts"] if fresh_first else [])
                      + ["priority", "next_attempt_at", "id"])
    # The pick is `id = ANY(ARRAY(SELECT ...))`: an InitPlan, run exactly once, whose ids the
    # UPDATE finds through the primary key. As `WHERE id IN (SELECT ... LIMIT ... FOR UPDATE
    # SKIP LOCKED)` the planner put the locking subquery on the inner side of a nested loop and
    # re-ran it for every due row (a fresh 20,000-row table without statistics: one claim ran
    # 46 s and held up the other drains). The UPDATE repeats no status condition: the pick's
    # FOR UPDATE rechecks it on the locked row, which nobody else can change before this
    # statement ends, and a repeated one let the planner scan a partial status index (every
    # queued row) per claim instead of the primary key.
    return (
        f"UPDATE {table} SET {q('status')} = %s, {q('updated_at')} = %s, "
        f"{q('lease_token')} = %s, {q('lease_until')} = %s, "
        f"{q('attempts')} = {q('attempts')} + 1 "
        f"WHERE {q('id')} = ANY(ARRAY(SELECT {q('id')} FROM {table} WHERE {q('lane')} = %s "
        f"AND {q('status')} IN (%s, %s) AND {q('next_attempt_at')} <= %s {pinned}"
        f"ORDER BY {order} LIMIT %s FOR UPDATE SKIP LOCKED)) "
        f"RETURNING {', '.join(f'{table}.{q(c)}' for c in columns)}"
    )


def mark_sent(pks: Iterable[int], *, token: UUID, provider: str,
              provider_ids: Mapping[int, str] | None = None) -> int:
    """processing -> sent through `provider`. `provider_ids` holds only ids that differ from our
    Message-ID.

    Over SMTP the provider's id IS our Message-ID (derivable from the pk), so only ESP ids are
    stored: a 500-branch CASE was a third of a drain's CPU.
    """
    pks = list(pks)
    if not pks:
        return 0
    if connection.vendor == "postgresql":
        return _mark_sent_pg(pks, token, provider, provider_ids or {})
    fields: dict[str, Any] = {"provider": provider}
    if provider_ids:
        fields["provider_message_id"] = Case(
            *[When(pk=pk, then=Value(value)) for pk, value in provider_ids.items()],
            default=F("provider_message_id"), output_field=CharField(),
        )
    return _move("mark_sent", _claimed(pks, token), sent_at=timezone.now(), lease_until=None,
                 last_error="", **fields)


def _mark_sent_pg(pks: list[int], token: UUID, provider: str,
                  provider_ids: Mapping[int, str]) -> int:
    """PostgreSQL: `mark_sent` as ONE statement of fixed text, whatever the number of messages:
    the ids and ESP ids travel as two arrays (a NULL ESP id keeps the column as it is).

    The ORM's UPDATE plus a second UPDATE for the ESP ids cost ~1 ms of CPU per chunk to build,
    which the transactional lane (a chunk per email or two) paid per email.
    """
    with connection.cursor() as cursor:
        cursor.execute(_mark_sent_sql(), _mark_sent_params(pks, token, provider, provider_ids))
        return cursor.rowcount


def _mark_sent_params(pks: list[int], token: UUID, provider: str,
                      provider_ids: Mapping[int, str]) -> list[Any]:
    transition = TRANSITIONS["mark_sent"]
    now = timezone.now()
    return [transition.target.value, now, now, provider, pks,
            [provider_ids.get(pk) for pk in pks], pks, token,
            [source.value for source in transition.sources]]


@functools.cache
def _mark_sent_sql() -> str:
    q = connection.ops.quote_name
    return (
        f"UPDATE {q(Message._meta.db_table)} AS m SET {q('status')} = %s, {q('updated_at')} = %s, "
        f"{q('sent_at')} = %s, {q('lease_until')} = NULL, {q('last_error')} = '', "
        f"{q('provider')} = %s, "
        f"{q('provider_message_id')} = COALESCE(v.pid, m.{q('provider_message_id')}) "
        "FROM unnest(%s::bigint[], %s::text[]) AS v(id, pid) "
        # The ids once more as `id = ANY(...)`: an index condition on the primary key whose
        # size the planner knows. With the join alone it scanned the status index for every
        # `processing` row and hashed them (a plan test in test_transitions reads this).
        f"WHERE m.{q('id')} = v.id AND m.{q('id')} = ANY(%s::bigint[]) "
        f"AND m.{q('lease_token')} = %s "
        f"AND (m.{q('status')} || '') = ANY(%s::text[])"  # never by the status index: see _move
    )


def mark_sent_recorded(pks: list[int], *, token: UUID, provider: str,
                       provider_ids: Mapping[int, str], attempts: Sequence[AttemptRow],
                       counts: Mapping[totals.Key, int], sent_key: totals.Key, lane: str,
                       at: datetime) -> int:
    """PostgreSQL: `mark_sent` of a chunk whose every email `provider` accepted, with all that is
    recorded with it, in ONE statement (autocommit: its own transaction): the attempt rows, the
    /metrics totals (`counts`, plus the moved count on `sent_key`) and the minute's rollup row.

    What record_outcomes otherwise does in six round trips (BEGIN, mark_sent, the attempts, the
    totals, the rollup, COMMIT), which the transactional lane (a chunk per email or two) paid per
    email. The hot rows keep record_counts' lock order: the statement moves the messages and
    inserts the attempts, then writes the totals in sorted order, then the rollup row (each
    step reads a count of the one before, so it runs after it). Returns the messages moved.
    """
    if not pks:
        return 0
    params = [*_mark_sent_params(pks, token, provider, provider_ids),
              *attempt_arrays(attempts), *totals.add_plus_params(counts, sent_key),
              lane, minute_param(at), provider]
    with connection.cursor() as cursor:
        cursor.execute(_mark_sent_recorded_sql(), params)
        return int(cursor.fetchone()[0])


@functools.cache
def _mark_sent_recorded_sql() -> str:
    sent = "(SELECT n.sent FROM n)"
    return (
        f"WITH marked AS ({_mark_sent_sql()} RETURNING 1), "
        f"attempted AS ({attempts_sql(connection.alias)} RETURNING 1), "
        "n AS MATERIALIZED (SELECT (SELECT count(*) FROM marked) AS sent, "
        "(SELECT count(*) FROM attempted) AS attempts), "
        f"counted AS ({totals.add_plus_sql(sent)} RETURNING 1), "
        f"rolled AS ({add_sent_sql(sent, '(SELECT count(*) FROM counted) >= 0')} RETURNING 1) "
        "SELECT n.sent, (SELECT count(*) FROM rolled) FROM n"
    )


def schedule_retry(pk: int, *, token: UUID, due: datetime, error: str, pin: str = "") -> int:
    """processing -> retry after a failed try; the attempt stays counted. `pin` names the
    provider whose outcome was unknown (it may have sent it): only that one may retry it."""
    fields: dict[str, Any] = {"provider": pin} if pin else {}
    return _move("schedule_retry", _claimed([pk], token), next_attempt_at=due, lease_until=None,
                 last_error=error, **fields)


def release(pks: Iterable[int], *, token: UUID, due: datetime, reason: str,
            refund: bool) -> int:
    """processing -> retry without a try on record. `refund=True` when nothing was sent (the
    breaker held it back, the connection was lost before the message): the claim's attempt is
    given back, so a provider outage does not use up the message's attempts."""
    fields: dict[str, Any] = {"attempts": F("attempts") - 1} if refund else {}
    return _move("release", _claimed(pks, token), next_attempt_at=due, lease_until=None,
                 last_error=reason, **fields)


def kill(pks: Iterable[int], *, token: UUID, reason: DeadReason, error: str,
         signature: str = "") -> int:
    """processing -> dead (the DLQ) with its reason and failure signature (dlq/signatures.py:
    what the console groups dead letters by; "" only from callers that have no attempt)."""
    return _move("kill", _claimed(pks, token), dead_reason=DeadReason(reason), lease_until=None,
                 last_error=error, failure_signature=signature)


def lease_expired(message: Message, *, now: datetime) -> Status | None:
    """A `processing` message whose lease ran out (its worker died): back to retry, due now, or
    dead (max_attempts) if that was its last attempt. The email may have gone out before the
    crash, so the attempt stays counted and is recorded as lease_expired. `message` needs id,
    attempts, max_attempts and lease_token. Returns the new status, or None if another process
    moved it first."""
    token = message.lease_token
    if token is None:  # not a claimed row: nothing to take back
        return None
    with transaction.atomic():
        if message.attempts >= message.max_attempts:
            # The same inputs as the lease_expired attempt recorded below (no class, no code).
            signature = failure_signature(
                dead_reason=DeadReason.MAX_ATTEMPTS, error_class="", error_code="",
                error_message=LEASE_LOST, to_email=_recipient(message))
            moved = kill([message.pk], token=token, reason=DeadReason.MAX_ATTEMPTS,
                         error=LEASE_LOST, signature=signature)
            target = Status.DEAD
        else:
            moved = _move("lease_expired", _claimed([message.pk], token),
                          next_attempt_at=now, lease_until=None, last_error=LEASE_LOST)
            target = Status.RETRY
        if not moved:
            return None
        DeliveryAttempt.objects.create(
            message_id=message.pk, number=message.attempts, started_at=now,
            outcome=Outcome.LEASE_EXPIRED, error_message=LEASE_LOST,
        )
    return target


def _recipient(message: Message) -> str:
    # The sweeper loads only the columns it needs: read the address without loading the row.
    if "to_email" in message.get_deferred_fields():
        return Message.objects.filter(pk=message.pk).values_list("to_email", flat=True).first() \
            or ""
    return message.to_email


def cancel(pks: Iterable[int]) -> int:
    """pending/retry -> cancelled: not sent, and never will be."""
    return _move("cancel", Q(pk__in=list(pks)), lease_until=None)


def requeue(pk: int, *, now: datetime, expires_at: datetime | None,
            template_version_id: int | None = None) -> int:
    """dead -> pending, due now, with the retry bookkeeping reset (attempts, lease, reason,
    expiry), optionally re-pinned to another template version. A bare status update would
    leave it with no attempts left, to die again on its first failure."""
    fields: dict[str, Any] = {"template_version_id": template_version_id} \
        if template_version_id is not None else {}
    return _move("requeue", Q(pk=pk), attempts=0, next_attempt_at=now, lease_until=None,
                 lease_token=None, dead_reason="", expires_at=expires_at, **fields)


def discard(pks: Iterable[int]) -> int:
    """dead -> cancelled: the operator gave up on it. dead_reason, last_error and the failure
    signature stay, so the history says why it died."""
    return _move("discard", Q(pk__in=list(pks)), lease_until=None)


def suppress(pks: Iterable[int], *, suppression_id: int, reason: str,
             token: UUID | None = None) -> int:
    """pending/retry (at ingest) or processing (claimed, then, with its `token`) -> suppressed:
    never sent. A claimed one gets its attempt back: nothing was tried."""
    if token is None:
        return _move("suppress", Q(pk__in=list(pks), status__in=(Status.PENDING, Status.RETRY)),
                     suppressed_by_id=suppression_id, last_error=reason, lease_until=None)
    return _move("suppress", _claimed(pks, token), suppressed_by_id=suppression_id,
                 last_error=reason, lease_until=None, attempts=F("attempts") - 1)


def deliver(pk: int) -> int:
    """sent -> delivered (a late `delivered` never downgrades a bounce or a complaint)."""
    return _move("deliver", Q(pk=pk))


def bounce(pk: int, *, kind: Bounce, error: str) -> int:
    """sent/delivered -> bounced; a hard bounce also hardens a soft one, a soft one never
    softens a hard one."""
    where = Q(pk=pk) & (Q(status__in=(Status.SENT, Status.DELIVERED))
                        | Q(status=Status.BOUNCED, bounce=Bounce.SOFT) if kind == Bounce.HARD
                        else Q(status__in=(Status.SENT, Status.DELIVERED)))
    return _move("bounce", where, bounce=Bounce(kind), last_error=error)


def complain(pk: int) -> int:
    """sent/delivered/bounced -> complained: the recipient marked it as spam."""
    return _move("complain", Q(pk=pk))


def mermaid_diagram() -> str:
    """The state diagram of TRANSITIONS in Mermaid syntax (docs/architecture.md, section 3).

    A label holds no colon and no semicolon: Mermaid reads `a --> b: label` up to the end of the
    line, but older renderers reject a second colon, and a semicolon ends a statement in several
    of its grammars (tests/dlq/test_transitions.py checks it)."""
    lines = ["stateDiagram-v2", f"    [*] --> {Status.PENDING.value}: notify()"]
    for name, transition in TRANSITIONS.items():
        for source in transition.sources:
            lines.append(
                f"    {source.value} --> {transition.target.value}: {name} ({transition.label})"
            )
    for final in (Status.CANCELLED, Status.SUPPRESSED, Status.COMPLAINED):
        lines.append(f"    {final.value} --> [*]")
    return "\n".join(lines)
