"""Waking a lane: the only job django-q2 does for us.

A wake-up is a hint, not the message: the Message rows are the queue. LaneState.wake_pending
debounces a burst of notify() calls into one queued drain task:

1. notify() commits its row, then (on commit) flips wake_pending False -> True with a conditional
   UPDATE; only the caller that flipped it enqueues a drain task.
2. The drain task sets wake_pending back to False *before* its first claim, so a row committed
   after that point makes the next notify() enqueue a fresh task. No row can fall between.
3. If a task is lost anyway (Redis crash, purged queue, killed worker) the flag may stay True; the
   sweeper wakes every lane that has due rows regardless of the flag, so the loss costs latency,
   never a message.
"""

from __future__ import annotations

import functools
import logging

from django.db import connection, transaction
from django.utils import timezone
from django_q.tasks import async_task

from notifications import listener
from notifications.models import LaneState

logger = logging.getLogger(__name__)

DRAIN_TASK = "notifications.tasks.drain_lane"


def wake_lane_on_commit(lane: str) -> None:
    transaction.on_commit(lambda: wake_lane(lane))


def wake_lane(lane: str, *, force: bool = False) -> bool:
    """Enqueue a drain task for `lane` unless one is already pending. Returns True if enqueued."""
    flipped = _flip(lane)
    if not flipped and not force:
        # A drain is already queued (the lane rows are created by migrate, see schedules.py).
        return False
    try:
        async_task(DRAIN_TASK, lane, cluster=lane, group=f"drain-{lane}")
    except Exception:
        # The message is already committed; the sweeper will wake the lane. Undo the flag so the
        # next notify() tries again rather than waiting for the sweeper.
        logger.exception("could not enqueue a drain task for lane %s", lane)
        LaneState.objects.filter(lane=lane).update(wake_pending=False)
        return False
    return True


@functools.cache
def _flip_sql(listen: bool, atomic: bool) -> str:
    q = connection.ops.quote_name
    flip = (
        f"UPDATE {q(LaneState._meta.db_table)} SET {q('wake_pending')} = %s, "
        f"{q('wake_requested_at')} = %s WHERE {q('lane')} = %s AND {q('wake_pending')} = %s"
    )
    if not listen:
        return flip
    # The same statement wakes drains waiting on LISTEN (notifications/listener.py). NOTIFY takes
    # PostgreSQL's global notify lock from commit until the commit is flushed; in autocommit this
    # statement is its own transaction, so it commits without waiting for the flush (the flag and
    # the notification are hints: a crash that loses them costs latency, the sweeper wakes the
    # lane). Inside a caller's transaction that setting would apply to all of it: not there.
    asynchronous = "" if atomic else ", set_config('synchronous_commit', 'off', true)"
    return (f"WITH flipped AS ({flip} RETURNING 1) "
            f"SELECT (SELECT count(*) FROM flipped), pg_notify(%s, ''){asynchronous}")


def _flip(lane: str) -> int:
    """wake_pending False -> True for `lane`; 1 if this call flipped it, else 0. On PostgreSQL
    (NOTIFY_DRAIN_LISTEN) also notifies the lane's waiting drains, flipped or not.

    Runs after every enqueue: plain SQL, because building the same conditional UPDATE through
    the ORM cost more CPU than PostgreSQL spent executing it.
    """
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    listen = listener.enabled()
    with connection.cursor() as cursor:
        if not listen:
            cursor.execute(_flip_sql(False, False), [True, now, lane, False])
            return cursor.rowcount
        own_transaction = connection.get_autocommit() and not connection.in_atomic_block
        cursor.execute(_flip_sql(True, not own_transaction),
                       [True, now, lane, False, listener.channel(lane)])
        return int(cursor.fetchone()[0])


def wake_taken(lane: str) -> None:
    """Called by a drain before it claims: later commits must enqueue a new task.

    Also the lane's heartbeat: readiness checks look at when its cluster last ran a task.
    """
    LaneState.objects.filter(lane=lane).update(wake_pending=False, heartbeat_at=timezone.now())


def heartbeat(lane: str) -> None:
    LaneState.objects.filter(lane=lane).update(heartbeat_at=timezone.now())
