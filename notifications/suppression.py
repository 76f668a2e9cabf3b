"""The suppression list: the one home of Suppression rows and of the rule that stops a message.

An address is suppressed for one scope: "" (every email) after a hard bounce, a complaint,
repeated soft bounces or an operator's entry; a category (EventType.unsubscribe_category) after
an unsubscribe from it ("" too, for "unsubscribe from everything"). The rule, `blocks()`:

    an active row blocks a message to its address if its scope is "" or the message's category,
    unless the row is an unsubscribe and the message's event type is unsubscribe_exempt.

So transactional mail can ignore unsubscribes, never a hard bounce or a complaint. The rule is
applied twice, by the same function: at ingest (the message is written, then moved to
`suppressed` in the same transaction, and the producer still gets its 202) and when a drain
claims a message (an address suppressed while the message waited is never mailed).

One row per (address, scope); a stronger reason replaces a weaker one (complaint > hard bounce >
soft bounces > manual > unsubscribe), never the other way, so an unsubscribe-from-everything
cannot turn a complaint into something transactional mail may ignore. Removing a row
deactivates it; the row stays as history. Operators' changes are audited.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from notifications import events, lookups, totals, transitions
from notifications.audit import audit_record
from notifications.models import (
    AuditAction,
    EventType,
    Message,
    Status,
    Suppression,
    SuppressionReason,
)
from notifications.rollup import record_counts

# Strongest first.
_STRENGTH = {reason: rank for rank, reason in enumerate(reversed(SuppressionReason.values))}


def normalize(email: str) -> str:
    """The form addresses are stored and compared in: trimmed and lower-cased (mailbox providers
    treat local parts case-insensitively; a suppression must not miss `Bob@` for `bob@`)."""
    return email.strip().lower()


def stronger(reason: str, than: str) -> bool:
    return _STRENGTH.get(reason, -1) > _STRENGTH.get(than, -1)


@dataclass(frozen=True)
class Kind:
    """What the rule needs to know about a message's event type."""

    category: str
    exempt: bool


def kind_of(event_type_id: int) -> Kind:
    """The event type's category and unsubscribe exemption (cached per process)."""
    return lookups.cached("suppression_kind", event_type_id, lambda: _load_kind(event_type_id))


def _load_kind(event_type_id: int) -> Kind:
    et = EventType.objects.only("key", "category", "unsubscribe_exempt").get(pk=event_type_id)
    return Kind(et.unsubscribe_category, et.unsubscribe_exempt)


@dataclass(frozen=True)
class Row:
    pk: int
    email: str
    scope: str
    reason: str


def blocks(row: Row, kind: Kind) -> bool:
    """THE rule: does active suppression `row` stop a message of `kind` to its address?"""
    if row.scope not in ("", kind.category):
        return False
    return not (kind.exempt and row.reason == SuppressionReason.UNSUBSCRIBE)


def active_rows(emails: Iterable[str]) -> dict[str, list[Row]]:
    """Active suppressions of `emails` (normalized), by address. One indexed query in plain SQL:
    it runs for every claim, a transactional drain's claim being one or two emails."""
    wanted = sorted({normalize(e) for e in emails})
    if not wanted:
        return {}
    q = connection.ops.quote_name
    found: dict[str, list[Row]] = {}
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {q('id')}, {q('email')}, {q('scope')}, {q('reason')} "
            f"FROM {q(Suppression._meta.db_table)} WHERE {q('active')} = %s AND {q('email')} "
            f"IN ({', '.join(['%s'] * len(wanted))})", [True, *wanted])
        for pk, email, scope, reason in cursor.fetchall():
            found.setdefault(email, []).append(Row(pk, email, scope, reason))
    return found


def blocking(messages: Sequence[Message]) -> dict[int, Row]:
    """For each of `messages` (to_email, event_type_id) that must not be sent: the row that
    stops it (the strongest, if several)."""
    rows = active_rows(m.to_email for m in messages)
    if not rows:
        return {}
    out: dict[int, Row] = {}
    for message in messages:
        candidates = rows.get(normalize(message.to_email))
        if not candidates:
            continue
        kind = kind_of(message.event_type_id)
        stopping = [r for r in candidates if blocks(r, kind)]
        if stopping:
            out[message.pk] = max(stopping, key=lambda r: _STRENGTH.get(r.reason, -1))
    return out


def would_stop(message: Message) -> bool:
    """Would the rule stop this (unsaved) message now? One query; ingest asks it first so the
    common case stays a single INSERT."""
    kind = kind_of(message.event_type_id)
    return any(blocks(r, kind) for r in active_rows([message.to_email]).get(
        normalize(message.to_email), ()))


def describe(row: Row) -> str:
    label = SuppressionReason(row.reason).label if row.reason in SuppressionReason.values \
        else row.reason
    return f"suppressed: {label.lower()} ({row.scope or 'all mail'})"


def stop_suppressed(messages: Sequence[Message], *, claimed: bool) -> list[Message]:
    """Move those of `messages` whose recipient is suppressed to `suppressed` (claimed ones with
    their lease token, new ones from pending) and return the others. Counted in the rollup."""
    stopped = blocking(messages)
    if not stopped:
        return list(messages)
    # Grouped by lane too: a batch of notify_many can mix lanes, and each lane's rollup must
    # count its own (the transition's row count cannot say which of a mixed group moved).
    by_row: dict[tuple[Any, int, str], list[Message]] = {}
    for message in messages:
        row = stopped.get(message.pk)
        if row is not None:
            by_row.setdefault((message.lease_token if claimed else None, row.pk, message.lane),
                              []).append(message)
    moved: dict[str, int] = {}
    counts: Counter[totals.Key] = Counter()
    logged: list[tuple[str, dict[str, Any]]] = []
    rows = {row.pk: row for row in stopped.values()}
    for (token, row_pk, lane), group in by_row.items():
        count = transitions.suppress([m.pk for m in group], suppression_id=row_pk,
                                     reason=describe(rows[row_pk]), token=token)
        moved[lane] = moved.get(lane, 0) + count
        counts[(lane, "", "suppressed", rows[row_pk].reason)] += count
        if count:
            for message in group:
                message.status = Status.SUPPRESSED
                message.suppressed_by_id = row_pk
                logged.append(("message.suppressed", {
                    "message_id": message.pk, "lane": lane, "provider": "",
                    "outcome": "suppressed", "reason": rows[row_pk].reason,
                    "scope": rows[row_pk].scope}))
    now = timezone.now()

    def add_counts() -> None:
        record_counts(at=now, totals_counts=counts,
                      minutes={(lane, ""): {"suppressed": n} for lane, n in moved.items()})

    if connection.in_atomic_block:
        # Inside the caller's transaction (notify() in an app's own atomic block) these hot rows
        # would stay locked until the caller commits, and two callers suppressing for different
        # reasons in opposite orders would deadlock on them: counted once it commits instead
        # (a crash in between loses the count, never the suppression).
        transaction.on_commit(add_counts)
    else:
        add_counts()
    events.emit_on_commit(logged)
    return [m for m in messages if m.pk not in stopped]


def suppressed_emails(emails: Iterable[str]) -> set[str]:
    """The addresses among `emails` suppressed for every email ("" scope): what the DLQ's
    requeue preview skips when it cannot tell the category (see blocking() for the full rule)."""
    wanted = {e: normalize(e) for e in emails}
    rows = active_rows(wanted.values())
    return {e for e, n in wanted.items() if any(r.scope == "" for r in rows.get(n, ()))}


# --- writing ------------------------------------------------------------------------------------

def suppress(*, email: str, reason: SuppressionReason | str, scope: str = "", source: str = "",
             message_id: int | None = None, note: str = "", user: Any = None,
             audit_reason: str = "") -> tuple[Suppression, bool]:
    """Suppress `email` for `scope` because of `reason`. Returns the row and whether it changed
    (created, reactivated or made stronger). `user` (an operator) makes it audited."""
    email = normalize(email)
    reason = SuppressionReason(reason)
    # No savepoints: called inside a webhook's transaction, each one is two more round trips.
    with transaction.atomic(savepoint=False):
        pk = _insert_new(email=email, scope=scope, reason=reason, source=source[:200],
                         message_id=message_id, note=note)
        lookup: dict[str, Any] = {"pk": pk} if pk else {"email": email, "scope": scope}
        row = Suppression.objects.select_for_update().get(**lookup)
        changed = pk is not None
        if not changed and (not row.active or stronger(reason, row.reason)):
            row.active, row.reason, row.source = True, reason, source[:200]
            row.message_id = message_id or row.message_id
            row.note = note or row.note
            row.save(update_fields=["active", "reason", "source", "message", "note",
                                    "updated_at"])
            changed = True
        if changed and user is not None:
            audit_record(user=user, action=AuditAction.SUPPRESS, count=1, reason=audit_reason,
                         target=f"{email} ({scope or 'all mail'}: {reason})")
    return row, changed


def _insert_new(*, email: str, scope: str, reason: str, source: str, message_id: int | None,
                note: str) -> int | None:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING id (PostgreSQL and SQLite alike): the new
    row's id, or None if (email, scope) has a row already. One statement, no savepoint."""
    q = connection.ops.quote_name
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    columns = ("email", "scope", "reason", "active", "source", "note", "message_id",
               "created_at", "updated_at")
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {q(Suppression._meta.db_table)} ({', '.join(q(c) for c in columns)}) "
            f"VALUES ({', '.join(['%s'] * len(columns))}) "
            f"ON CONFLICT ({q('email')}, {q('scope')}) DO NOTHING RETURNING {q('id')}",
            [email, scope, reason, True, source, note, message_id, now, now])
        found = cursor.fetchone()
    return int(found[0]) if found else None


def suppress_many(entries: Iterable[tuple[str, str, str]], *, reason: SuppressionReason | str,
                  source: str) -> int:
    """`suppress` for many (email, scope, note) entries at once (a CSV import): the same rule
    (a new row, or an inactive or weaker one made active with `reason`; a stronger one left
    alone) in a few queries per call instead of a few per row, which made a 100,000-row import
    take minutes. Not audited: the caller records the batch once. Returns how many changed.

    A row another request creates between the read and the insert is left as it is (the insert
    skips it): it came from a webhook, so it is stronger than an operator's entry or is an
    unsubscribe, which stops the same mail for that category."""
    reason = SuppressionReason(reason)
    wanted: dict[tuple[str, str], str] = {}
    for email, scope, note in entries:
        wanted.setdefault((normalize(email), scope), note)
    if not wanted:
        return 0
    now = timezone.now()
    with transaction.atomic():
        existing = {(r.email, r.scope): r for r in Suppression.objects.select_for_update().filter(
            email__in={email for email, _ in wanted})}
        new = [Suppression(email=email, scope=scope, reason=reason, source=source[:200],
                           note=note)
               for (email, scope), note in wanted.items() if (email, scope) not in existing]
        Suppression.objects.bulk_create(new, ignore_conflicts=True)
        revived = []
        for key, row in existing.items():
            if key in wanted and (not row.active or stronger(reason, row.reason)):
                row.active, row.reason, row.source = True, reason, source[:200]
                row.note = wanted[key] or row.note
                row.updated_at = now
                revived.append(row)
        Suppression.objects.bulk_update(
            revived, ["active", "reason", "source", "note", "updated_at"], batch_size=500)
    return len(new) + len(revived)


def unsuppress(*, pks: Iterable[int], user: Any, reason: str = "") -> int:
    """Deactivate suppressions (the address may be mailed again); audited. Returns how many."""
    pks = list(pks)
    with transaction.atomic():
        rows = list(Suppression.objects.select_for_update().filter(pk__in=pks, active=True))
        if not rows:
            return 0
        Suppression.objects.filter(pk__in=[r.pk for r in rows]).update(
            active=False, updated_at=timezone.now())
        audit_record(user=user, action=AuditAction.UNSUPPRESS, count=len(rows), reason=reason,
                     target=", ".join(f"{r.email} ({r.scope or 'all mail'})" for r in rows[:10])
                     + (f" and {len(rows) - 10} more" if len(rows) > 10 else ""),
                     filter={"ids": [r.pk for r in rows]})
    return len(rows)


def unsubscribe(*, email: str, categories: Iterable[str], source: str) -> int:
    """The recipient unsubscribed from `categories` ("" = everything). Returns how many scopes
    changed."""
    return sum(suppress(email=email, reason=SuppressionReason.UNSUBSCRIBE, scope=c,
                        source=source)[1] for c in set(categories))


def resubscribe(*, email: str, categories: Iterable[str], source: str) -> int:
    """The recipient asked for `categories` again: only their own unsubscribes are lifted,
    never a bounce, a complaint or an operator's entry."""
    return Suppression.objects.filter(
        email=normalize(email), scope__in=list(categories), active=True,
        reason=SuppressionReason.UNSUBSCRIBE,
    ).update(active=False, source=source[:200], updated_at=timezone.now())


def unsubscribed_categories(email: str) -> set[str]:
    """The scopes `email` has unsubscribed from ("" = everything)."""
    return set(Suppression.objects.filter(
        email=normalize(email), active=True, reason=SuppressionReason.UNSUBSCRIBE,
    ).values_list("scope", flat=True))


def categories() -> list[str]:
    """Every category a recipient can unsubscribe from: those of the event types that honour
    unsubscribes, sorted."""
    return sorted({et.unsubscribe_category for et in EventType.objects.filter(
        is_active=True, unsubscribe_exempt=False).only("key", "category")})


