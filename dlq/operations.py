"""Tracked operations: a requeue or discard of every dead letter matching a filter, worked by a
django-q2 task in chunks, with progress, a pace, a cancel button and an audit trail.

1. `operation_create` checks the request, snapshots the newest matching id (`max_pk`, so
   letters dying meanwhile are not chased), counts the matching rows, and audits who, what
   filter, how many and why. `operation_enqueue` queues the task on commit.
2. `operation_run` (the task) takes the operation's lease, then per chunk, in one transaction:
   the next CHUNK_SIZE matching ids after `cursor`, requeued or discarded through dlq.services
   (the preview's skip rules apply), and the progress and cursor saved. Between chunks it reads
   the cancel flag and sleeps to keep the pace. When its time budget (well under Q_TIMEOUT) is
   spent it frees the lease and queues its successor, which goes on from the cursor.
3. It ends `done` (no row left), `cancelled` or `failed` (an error; the chunk rolled back) and
   audits the final count.
4. A failed operation stays failed until an operator retries it (`operation_retry`, audited):
   the error may need fixing first (a template, a full disk), so nothing retries it blindly.
   The retry queues a task that goes on from the saved cursor: the chunks committed before the
   error stay done, and the chunk that failed is the first one tried again.

If a worker dies mid-operation its lease expires; `operations_resume_stale` (run every minute
by the alerts schedule, or `manage.py dlq resume`) queues a task that continues from the saved
cursor. Rows already moved are no longer dead, so nothing is done twice.

Pace: a chunk holds at most ceil(pace) rows and is followed by a sleep that keeps the average
at `pace` per second; a successor task starts its first chunk at once, so at a task boundary
one chunk may come up to a second early.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Max, Q
from django.utils import timezone
from django_q.tasks import async_task

from dlq.models import FINAL_STATUSES, Operation, OperationKind, OperationStatus, RePin
from dlq.selectors import DeadLetterFilter
from dlq.services import ChunkResult, dead_letters_discard, dead_letters_requeue
from notifications.audit import audit_record
from notifications.models import AuditAction

logger = logging.getLogger(__name__)

RUN_TASK = "dlq.tasks.operation_run"
MAX_PACE = 10_000.0
MIN_PACE = 0.1


class InvalidOperation(ValueError):
    """A request the operation cannot be created from (the message says why)."""


def _conf() -> dict[str, Any]:
    return settings.NOTIFY_DLQ


def _budget() -> float:
    """Seconds a task works before handing over: the setting, and at most half of Q_TIMEOUT
    (a chunk and a pace sleep may still run after the check)."""
    timeout = float(settings.Q_CLUSTER.get("timeout") or 60)
    return min(float(_conf()["TASK_BUDGET_SECONDS"]), timeout / 2)


def operation_create(*, kind: str, flt: DeadLetterFilter, reason: str, user: Any,
                     pace: float | None = None, repin: str = RePin.FAILED_ONLY,
                     include_expired: bool = False) -> Operation:
    """Create (not start) an operation; InvalidOperation on a bad request. Audited."""
    if kind not in OperationKind.values:
        raise InvalidOperation(f"kind: must be one of {', '.join(OperationKind.values)}")
    reason = (reason or "").strip()
    if not reason:
        raise InvalidOperation("reason: say why (it goes into the audit log)")
    if pace is not None and not (MIN_PACE <= pace <= MAX_PACE and math.isfinite(pace)):
        raise InvalidOperation(f"pace: messages per second between {MIN_PACE} and {MAX_PACE:g}")
    if repin not in RePin.values:
        raise InvalidOperation(f"repin: must be one of {', '.join(RePin.values)}")
    rows = flt.queryset()
    with transaction.atomic():
        max_pk = rows.aggregate(top=Max("pk"))["top"] or 0
        total = rows.filter(pk__lte=max_pk).count() if max_pk else 0
        name = user if isinstance(user, str) else (user.get_username() if user else "")
        operation = Operation.objects.create(
            kind=kind, filter=flt.to_params(), reason=reason, pace=pace, repin=repin,
            include_expired=include_expired, total=total, max_pk=max_pk,
            created_by=None if isinstance(user, str) or user is None or not user.pk else user,
            created_by_name=name[:150])
        audit_record(user=user, action=_action(kind),
                     target=f"operation #{operation.pk}: {kind} {flt.describe()}",
                     count=total, reason=reason, filter=_audit_filter(operation))
    return operation


def _action(kind: str) -> AuditAction:
    return AuditAction.REQUEUE if kind == OperationKind.REQUEUE else AuditAction.DISCARD


def _audit_filter(operation: Operation, **extra: Any) -> dict[str, Any]:
    return {**operation.filter, "operation": operation.pk, "pace": operation.pace,
            "repin": operation.repin, "include_expired": operation.include_expired, **extra}


def operation_enqueue(operation: Operation) -> None:
    """Queue the operation's task once the surrounding transaction commits."""
    transaction.on_commit(lambda: _enqueue(operation.pk))


def _enqueue(operation_id: int) -> None:
    try:
        async_task(RUN_TASK, operation_id, cluster=_conf()["CLUSTER"],
                   group="dlq-operations")
    except Exception:
        # The operation row is committed: operations_resume_stale picks it up within a minute.
        logger.exception("could not enqueue dlq operation %s", operation_id)


def operation_cancel(*, operation: Operation, user: Any) -> bool:
    """Ask the operation to stop after its current chunk (at once if no task took it yet).
    Returns False if it had already ended. Audited."""
    now = timezone.now()
    with transaction.atomic():
        asked = Operation.objects.filter(pk=operation.pk, cancel_requested=False).exclude(
            status__in=FINAL_STATUSES).update(cancel_requested=True, updated_at=now)
        if not asked:
            return False
        audit_record(user=user, action=AuditAction.OPERATION_CANCEL,
                     target=f"operation #{operation.pk}: {operation.kind}",
                     count=Operation.objects.get(pk=operation.pk).done,
                     reason="cancelled by an operator", filter=_audit_filter(operation))
        # No task holds it: end it now rather than when (if ever) a task runs.
        if Operation.objects.filter(pk=operation.pk, status=OperationStatus.PENDING).filter(
                Q(lease_until__isnull=True) | Q(lease_until__lt=now)).exists():
            _finish(operation.pk, OperationStatus.CANCELLED)
    return True


def operation_retry(*, operation: Operation, user: Any) -> bool:
    """Restart a FAILED operation from its saved cursor; returns False if it had not failed
    (or another retry got there first). Audited, with the error it had; the task is queued on
    commit.

    The failing chunk's transaction rolled back, so the cursor is the end of the last chunk
    that committed: the retry starts with the chunk that failed and redoes nothing before it.
    `max_pk` is kept, so letters that died since are not taken in (a new operation takes them).
    """
    now = timezone.now()
    with transaction.atomic():
        error = Operation.objects.filter(pk=operation.pk).values_list("error", flat=True).first()
        retried = Operation.objects.filter(pk=operation.pk, status=OperationStatus.FAILED).update(
            status=OperationStatus.PENDING, error="", finished_at=None, lease_until=None,
            cancel_requested=False, updated_at=now)
        if not retried:
            return False
        current = Operation.objects.get(pk=operation.pk)
        audit_record(user=user, action=AuditAction.OPERATION_RETRY,
                     target=f"operation #{current.pk}: {current.kind}", count=current.done,
                     reason=f"retried by an operator after: {error or 'an unknown error'}",
                     filter=_audit_filter(current, cursor=current.cursor))
        operation_enqueue(current)
    return True


def _claim(operation_id: int, budget: float) -> bool:
    """Take the operation's lease (one task at a time works on it)."""
    now = timezone.now()
    lease = now + timedelta(seconds=budget + _conf()["LEASE_GRACE_SECONDS"])
    claimed = Operation.objects.filter(
        Q(lease_until__isnull=True) | Q(lease_until__lt=now),
        pk=operation_id, status__in=(OperationStatus.PENDING, OperationStatus.RUNNING),
    ).update(status=OperationStatus.RUNNING, lease_until=lease, updated_at=now)
    if claimed:
        Operation.objects.filter(pk=operation_id, started_at__isnull=True).update(started_at=now)
    return bool(claimed)


def operation_run(operation_id: int, *, budget: float | None = None, requeue_self: bool = True,
                  sleep: Callable[[float], None] = time.sleep,
                  clock: Callable[[], float] = time.monotonic) -> Operation | None:
    """Work the operation until it ends or `budget` seconds pass (then, with `requeue_self`,
    queue a successor). Returns the operation as it is now, or None if another task holds it
    or it had ended."""
    budget = _budget() if budget is None else budget
    if not _claim(operation_id, budget):
        return None
    deadline = clock() + budget
    try:
        while True:
            operation = Operation.objects.get(pk=operation_id)
            if operation.cancel_requested:
                return _finish(operation_id, OperationStatus.CANCELLED)
            started = clock()
            moved = _run_chunk(operation, budget)
            if moved is None:
                return _finish(operation_id, OperationStatus.DONE)
            if operation.pace:
                wait = moved / operation.pace - (clock() - started)
                if wait > 0:
                    sleep(wait)
            if clock() >= deadline:
                Operation.objects.filter(pk=operation_id).update(lease_until=None)
                if requeue_self:
                    _enqueue(operation_id)
                return Operation.objects.get(pk=operation_id)
    except Exception as exc:
        logger.exception("dlq operation %s failed", operation_id)
        Operation.objects.filter(pk=operation_id).update(error=f"{type(exc).__name__}: {exc}")
        return _finish(operation_id, OperationStatus.FAILED)


def _chunk_size(operation: Operation) -> int:
    size = int(_conf()["CHUNK_SIZE"])
    if operation.pace:
        size = min(size, max(1, math.ceil(operation.pace)))
    return size


def _run_chunk(operation: Operation, budget: float) -> int | None:
    """One chunk in one transaction. Returns how many rows it handled (moved or skipped), or
    None when no matching row is left."""
    flt = DeadLetterFilter.from_params(operation.filter)
    with transaction.atomic():
        pks = list(flt.queryset().filter(pk__gt=operation.cursor, pk__lte=operation.max_pk)
                   .order_by("pk").values_list("pk", flat=True)[:_chunk_size(operation)])
        if not pks:
            return None
        result: ChunkResult
        if operation.kind == OperationKind.REQUEUE:
            result = dead_letters_requeue(pks=pks, repin=operation.repin,
                                          include_expired=operation.include_expired,
                                          skip_checks=True)
        else:
            result = dead_letters_discard(pks=pks)
        skipped = Counter(operation.skipped)
        skipped.update(result.skipped)
        now = timezone.now()
        Operation.objects.filter(pk=operation.pk).update(
            done=operation.done + result.moved, skipped=dict(skipped), cursor=pks[-1],
            lease_until=now + timedelta(seconds=budget + _conf()["LEASE_GRACE_SECONDS"]),
            updated_at=now)
    return len(pks)


def _finish(operation_id: int, status: OperationStatus) -> Operation:
    now = timezone.now()
    with transaction.atomic():
        ended = Operation.objects.filter(pk=operation_id).exclude(
            status__in=FINAL_STATUSES).update(status=status, finished_at=now, lease_until=None,
                                              updated_at=now)
        operation = Operation.objects.select_related("created_by").get(pk=operation_id)
        if ended:
            audit_record(
                user=operation.created_by or operation.created_by_name,
                action=_action(operation.kind),
                target=f"operation #{operation.pk}: {operation.kind} {status}",
                count=operation.done, reason=operation.reason,
                filter=_audit_filter(operation, status=str(status), skipped=operation.skipped))
    return operation


def operations_resume_stale() -> list[int]:
    """Queue a task for every unfinished operation no task holds (its worker died, or its
    task was lost). Returns their ids."""
    now = timezone.now()
    stale = list(Operation.objects.filter(
        status__in=(OperationStatus.PENDING, OperationStatus.RUNNING)).filter(
        Q(lease_until__lt=now)
        | Q(lease_until__isnull=True, updated_at__lt=now - timedelta(
            seconds=_conf()["LEASE_GRACE_SECONDS"]))).values_list("pk", flat=True))
    for operation_id in stale:
        _enqueue(operation_id)
    return stale
