"""Writing to the dead letter queue: requeue and discard a set of dead letters.

Both go through notifications.transitions (requeue resets the retry bookkeeping; discard is
dead -> cancelled), so a row another operator or operation moved first is simply not matched
and not counted. Tracked, chunked operations over a filter are in dlq/operations.py; these are
the one code path each chunk (and notifications.services.messages_requeue) calls.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from dlq.models import RePin
from dlq.selectors import ROW_FIELDS, skip_reasons
from notifications import events, transitions
from notifications.models import DeadReason, EventType, Message, Status
from notifications.wakeups import wake_lane_on_commit
from templates_app.exceptions import NoActiveTemplateVersion
from templates_app.selectors import template_version_active


@dataclass
class ChunkResult:
    moved: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    lanes: set[str] = field(default_factory=set)


def _dead_rows(pks: Iterable[int]) -> list[Message]:
    return list(Message.objects.filter(pk__in=list(pks), status=Status.DEAD)
                .order_by("pk").only(*ROW_FIELDS))


def dead_letters_requeue(*, pks: Iterable[int], repin: RePin | str = RePin.FAILED_ONLY,
                         include_expired: bool = False, skip_checks: bool = False,
                         now: datetime | None = None) -> ChunkResult:
    """Send the dead letters among `pks` again: dead -> pending, due now, with a fresh attempt
    budget and expiry, waking their lanes on commit.

    `repin` chooses the template version: keep the pinned one, re-pin all to the active one, or
    (the default) re-pin only those whose template did not render. With `skip_checks` the rows
    the preview would skip (past their expiry unless `include_expired`, suppressed, already sent)
    stay dead and are counted by reason. Rows no longer dead are ignored.
    """
    now = now or timezone.now()
    repin = RePin(repin)
    result = ChunkResult()
    rows = _dead_rows(pks)
    if not rows:
        return result
    skips = skip_reasons(rows, include_expired=include_expired, now=now) if skip_checks else {}
    result.skipped.update(skips.values())
    event_types = EventType.objects.select_related("template").in_bulk(
        {r.event_type_id for r in rows})
    active: dict[tuple[int, str], int | None] = {}
    logged: list[tuple[str, dict[str, Any]]] = []
    with transaction.atomic():
        for row in rows:
            if row.pk in skips:
                continue
            event_type = event_types[row.event_type_id]
            version_id = None
            if repin == RePin.ACTIVE or (repin == RePin.FAILED_ONLY
                                         and row.dead_reason == DeadReason.RENDER_FAILED):
                version_id = _active_version(event_type, row.locale, active)
            expiry = event_type.expiry
            if transitions.requeue(row.pk, now=now,
                                   expires_at=(now + expiry) if expiry else None,
                                   template_version_id=version_id):
                result.moved += 1
                result.lanes.add(row.lane)
                logged.append(("message.requeued", {
                    "message_id": row.pk, "lane": row.lane, "provider": "",
                    "outcome": "requeued", "dead_reason": row.dead_reason}))
        events.emit_on_commit(logged)
        for lane in result.lanes:
            wake_lane_on_commit(lane)
    return result


def _active_version(event_type: EventType, locale: str,
                    cache: dict[tuple[int, str], int | None]) -> int | None:
    """The active version's id for the message's locale; None (keep the pinned one) if the
    template has no active version any more."""
    key = (event_type.template_id, locale)
    if key not in cache:
        try:
            cache[key] = template_version_active(template=event_type.template, locale=locale).pk
        except NoActiveTemplateVersion:
            cache[key] = None
    return cache[key]


def dead_letters_discard(*, pks: Iterable[int]) -> ChunkResult:
    """Give up on the dead letters among `pks`: dead -> cancelled, their dead reason kept."""
    result = ChunkResult()
    rows = _dead_rows(pks)
    if not rows:
        return result
    with transaction.atomic():
        result.moved = transitions.discard([r.pk for r in rows])
        # The rows the discard matched are these (dead ones); one that an operation elsewhere
        # requeued meanwhile is the rare exception the count shows.
        events.emit_on_commit([("message.discarded", {
            "message_id": r.pk, "lane": r.lane, "provider": "", "outcome": "discarded",
            "dead_reason": r.dead_reason}) for r in rows] if result.moved else [])
    result.lanes = {r.lane for r in rows}
    return result
