"""Each transition sets every field its meaning needs, whoever calls it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from notifications import transitions
from notifications.delivery import claim_batch
from notifications.models import DeadReason, DeliveryAttempt, Message, Outcome, Status
from notifications.services import notify

pytestmark = pytest.mark.usefixtures("demo", "no_wakeups")

ORDER = {"order_id": 3, "total": "$3", "items": [{"name": "Tea", "qty": 1}]}


def claimed(to: str = "ann@example.com") -> Message:
    message = notify(event="order.placed", to=to, data=ORDER)
    [row] = [m for m in claim_batch("transactional", 10) if m.pk == message.pk]
    return row


def fresh(message: Message) -> Message:
    return Message.objects.get(pk=message.pk)


def test_every_transition_in_the_table_has_its_function() -> None:
    for name in transitions.TRANSITIONS:
        assert callable(getattr(transitions, name)), name


def test_a_release_says_whether_it_refunds_the_attempt() -> None:
    refunded, kept = claimed("a@example.com"), claimed("b@example.com")
    due = timezone.now() + timedelta(seconds=10)

    for message, refund in ((refunded, True), (kept, False)):
        assert transitions.release([message.pk], token=message.lease_token, due=due,
                                   reason="handed back", refund=refund) == 1

    assert [(m.status, m.attempts, m.lease_until, m.last_error) for m in
            (fresh(refunded), fresh(kept))] == [
        (Status.RETRY, 0, None, "handed back"), (Status.RETRY, 1, None, "handed back")]


def test_an_expired_lease_goes_back_counted_and_on_record() -> None:
    message = claimed()

    assert transitions.lease_expired(message, now=timezone.now()) == Status.RETRY

    row = fresh(message)
    assert (row.status, row.attempts, row.lease_until) == (Status.RETRY, 1, None)
    assert row.last_error == transitions.LEASE_LOST
    assert list(DeliveryAttempt.objects.filter(message=row).values_list("outcome", flat=True)) \
        == [Outcome.LEASE_EXPIRED]
    # Another sweeper that read the same row finds nothing left to do, and records nothing.
    assert transitions.lease_expired(message, now=timezone.now()) is None
    assert DeliveryAttempt.objects.filter(message=row).count() == 1


def test_a_kill_needs_a_dead_reason_from_the_vocabulary() -> None:
    message = claimed()

    with pytest.raises(ValueError):
        transitions.kill([message.pk], token=message.lease_token, reason="gave_up",  # type: ignore[arg-type]
                         error="x")
    assert fresh(message).status == Status.PROCESSING

    transitions.kill([message.pk], token=message.lease_token, reason=DeadReason.EXPIRED,
                     error="late")
    row = fresh(message)
    assert (row.status, row.dead_reason, row.lease_until, row.last_error) == (
        Status.DEAD, "expired", None, "late")


def test_moves_out_of_processing_need_the_claims_token() -> None:
    message = claimed()
    stranger = type(message.lease_token)(int=0)

    assert transitions.mark_sent([message.pk], token=stranger, provider="default") == 0
    assert transitions.schedule_retry(message.pk, token=stranger, due=timezone.now(),
                                      error="x") == 0
    assert transitions.kill([message.pk], token=stranger, reason=DeadReason.EXPIRED,
                            error="x") == 0
    assert fresh(message).status == Status.PROCESSING


def test_requeue_resets_the_bookkeeping_and_can_repin(django_capture_on_commit_callbacks: Any
                                                      ) -> None:
    message = claimed()
    transitions.kill([message.pk], token=message.lease_token, reason=DeadReason.MAX_ATTEMPTS,
                     error="boom")
    now = timezone.now()

    assert transitions.requeue(message.pk, now=now, expires_at=now + timedelta(hours=1),
                               template_version_id=message.template_version_id) == 1
    assert transitions.requeue(message.pk, now=now, expires_at=None) == 0  # not dead any more

    row = fresh(message)
    assert (row.status, row.attempts, row.dead_reason, row.lease_until, row.lease_token,
            row.next_attempt_at, row.expires_at) == (
        Status.PENDING, 0, "", None, None, now, now + timedelta(hours=1))


def test_a_postgresql_claim_picks_its_rows_once_whatever_the_plan(django_db_blocker: Any) -> None:
    """The claim's locking pick (LIMIT ... FOR UPDATE SKIP LOCKED) must run exactly once. As an
    `id IN (subquery)` on a table without statistics, PostgreSQL re-ran it for every due row (a
    nested loop): one claim of 200 among 20,000 due rows ran 46 s and held up the other drains.
    And the rows it picked are then found through the primary key, not by scanning the queue."""
    from django.db import connection

    from notifications.delivery import _row_fields
    from notifications.services import notify_many

    if connection.vendor != "postgresql":
        pytest.skip("the one-statement claim is PostgreSQL's")
    notify_many([{"event": "marketing.newsletter", "to": f"r{i}@example.com",
                  "data": {"headline": "h", "body": "b"}} for i in range(3000)])
    now = timezone.now()
    sql = transitions._claim_due_sql(_row_fields(), False, True, False)
    params = ["processing", now, "0" * 32, now + timedelta(seconds=60), "bulk", "pending",
              "retry", now, 10]
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
        plan = cursor.fetchone()[0][0]["Plan"]

    def lock_rows(node: dict[str, Any]) -> list[dict[str, Any]]:
        found = [node] if node["Node Type"] == "LockRows" else []
        for child in node.get("Plans", []):
            found += lock_rows(child)
        return found

    def scans(node: dict[str, Any]) -> list[tuple[str, str]]:
        found = [(node["Node Type"], node.get("Index Name", ""))] if "Scan" in node[
            "Node Type"] else []
        for child in node.get("Plans", []):
            if child.get("Parent Relationship") != "InitPlan":
                found += scans(child)
        return found

    [pick] = lock_rows(plan)
    assert pick["Actual Loops"] == 1
    # ... and the rows it picked are updated through the primary key, not a scan of the queue.
    outer = scans(plan)
    assert {index for _, index in outer if index} == {"notifications_message_pkey"}, outer
    assert "Seq Scan" not in {kind for kind, _ in outer}, outer
    assert Message.objects.filter(status=Status.PROCESSING).count() == 10
