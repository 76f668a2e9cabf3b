"""Retention: old finished messages and their rows go, in batches; everything else stays."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from notifications.models import (
    DeliveryAttempt,
    Message,
    MetricTotal,
    Status,
    Suppression,
    TrackingEvent,
)
from notifications.retention import last_id_before, retention_delete
from notifications.services import notify

pytestmark = pytest.mark.usefixtures("demo", "no_wakeups")

ORDER = {"order_id": 7, "total": "$5", "items": [{"name": "Tea", "qty": 1}]}


def message(to: str, *, status: str = Status.SENT, age_days: float = 0,
            changed_days: float | None = None) -> Message:
    m = notify(event="order.placed", to=to, data=ORDER)
    now = timezone.now()
    Message.objects.filter(pk=m.pk).update(
        status=status, created_at=now - timedelta(days=age_days),
        updated_at=now - timedelta(days=age_days if changed_days is None else changed_days))
    DeliveryAttempt.objects.create(message_id=m.pk, number=1, started_at=now, outcome="sent")
    return m


def remaining() -> set[str]:
    return set(Message.objects.values_list("to_email", flat=True))


def test_it_deletes_old_finished_messages_with_their_rows_and_keeps_the_rest() -> None:
    for status in (Status.SENT, Status.DELIVERED, Status.BOUNCED, Status.COMPLAINED,
                   Status.CANCELLED, Status.SUPPRESSED):
        message(f"old-{status}@example.com", status=status, age_days=40)
    old_sent = Message.objects.get(to_email="old-sent@example.com")
    TrackingEvent.objects.create(esp="postmark", dedupe_key="k1", event_type="delivered",
                                 message=old_sent, recipient=old_sent.to_email)
    suppression = Suppression.objects.create(email="old-bounced@example.com", scope="",
                                             reason="hard_bounce",
                                             message=Message.objects.get(
                                                 to_email="old-bounced@example.com"))
    message("old-dead@example.com", status=Status.DEAD, age_days=40)
    message("old-pending@example.com", status=Status.PENDING, age_days=40)
    message("late-bounce@example.com", status=Status.BOUNCED, age_days=40, changed_days=2)
    message("recent@example.com", age_days=3)

    report = retention_delete(days=30, batch=2, duty=1)

    assert remaining() == {"old-dead@example.com", "old-pending@example.com",
                           "late-bounce@example.com", "recent@example.com"}
    assert (report.messages, report.attempts, report.tracking_events) == (6, 6, 1)
    assert report.batches == 3 and not report.more
    assert DeliveryAttempt.objects.count() == 4
    assert not TrackingEvent.objects.exists()
    suppression.refresh_from_db()
    assert suppression.message_id is None  # the suppression itself stays


def test_it_stops_at_its_budget_and_says_more_is_left() -> None:
    for i in range(5):
        message(f"old{i}@example.com", age_days=40)

    report = retention_delete(days=30, batch=2, budget=0.0001, duty=1)

    assert (report.messages, report.batches, report.more) == (2, 1, True)
    assert retention_delete(days=30, batch=10, duty=1).messages == 3


def test_zero_days_keeps_everything() -> None:
    message("ancient@example.com", age_days=4000)
    assert retention_delete(days=0).messages == 0
    assert remaining() == {"ancient@example.com"}


def test_the_bound_is_the_last_id_created_before_the_cutoff_despite_gaps() -> None:
    made = [message(f"m{i}@example.com", age_days=50 - i) for i in range(12)]
    Message.objects.filter(pk__in=[made[3].pk, made[4].pk, made[8].pk]).delete()
    cutoff = timezone.now() - timedelta(days=50 - 7 - 0.5)  # m0..m7 are older

    assert last_id_before(cutoff) == made[7].pk
    assert last_id_before(timezone.now() - timedelta(days=60)) is None
    assert last_id_before(timezone.now()) == made[-1].pk


def test_counters_are_not_lowered_by_retention(client: Any) -> None:
    MetricTotal.objects.create(lane="transactional", provider="default", name="sent", value=9)
    message("old@example.com", age_days=40)

    retention_delete(days=30, duty=1)

    assert MetricTotal.objects.get(name="sent").value == 9


def test_the_task_works_one_budget_without_sleeping_and_the_next_tick_goes_on(
    monkeypatch: Any, settings: Any,
) -> None:
    from notifications import tasks

    slept: list[float] = []
    monkeypatch.setattr("notifications.retention.time.sleep", slept.append)
    settings.NOTIFY = {**settings.NOTIFY, "RETENTION_BATCH": 1,
                       "RETENTION_BUDGET_SECONDS": 0.0001}
    message("a@example.com", age_days=40)
    message("b@example.com", age_days=40)

    first = tasks.retention()
    assert (first["messages"], first["more"]) == (1, True)
    assert tasks.retention()["messages"] == 1  # the next tick, where the last one stopped
    assert tasks.retention()["messages"] == 0
    assert slept == []  # a bulk worker is never held asleep


def test_unmatched_tracking_events_go_after_the_retention_period() -> None:
    old = TrackingEvent.objects.create(esp="postmark", dedupe_key="old", event_type="opened")
    new = TrackingEvent.objects.create(esp="postmark", dedupe_key="new", event_type="opened")
    TrackingEvent.objects.filter(pk=old.pk).update(
        received_at=timezone.now() - timedelta(days=31))

    report = retention_delete(days=30)

    assert report.tracking_events == 1
    assert list(TrackingEvent.objects.values_list("pk", flat=True)) == [new.pk]


def test_the_schedule_runs_on_the_housekeeping_cluster(settings: Any) -> None:
    from django_q.models import Schedule

    from notifications.schedules import ensure_schedules

    ensure_schedules()
    schedule = Schedule.objects.get(name="retention")
    assert (schedule.func, schedule.cluster, schedule.minutes) == (
        "notifications.tasks.retention", settings.NOTIFY_DLQ["CLUSTER"],
        settings.NOTIFY["RETENTION_MINUTES"])


def test_the_command_deletes_until_done_and_refuses_zero_days(capsys: Any) -> None:
    for i in range(3):
        message(f"old{i}@example.com", age_days=40)

    call_command("retention", "--days", "30")

    assert "3 messages older than 30 days deleted" in capsys.readouterr().out
    assert remaining() == set()
    with pytest.raises(CommandError, match="at least 1"):
        call_command("retention", "--days", "0")
    with pytest.raises(CommandError, match="--duty must be between"):
        call_command("retention", "--duty", "0")


@pytest.mark.django_db(transaction=True)
def test_a_row_another_transaction_holds_is_skipped_not_waited_for() -> None:
    import threading
    import time

    from django.db import connection, connections, transaction

    if not connection.features.has_select_for_update_skip_locked:
        pytest.skip("SKIP LOCKED is PostgreSQL's (SQLite has one writer at a time)")
    held, other = message("held@example.com", age_days=40), message("b@example.com", age_days=40)
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                list(Message.objects.select_for_update().filter(pk=held.pk))
                locked.set()
                release.wait(10)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(10)
        started = time.monotonic()
        report = retention_delete(days=30, duty=1)
        took = time.monotonic() - started
    finally:
        release.set()
        holder.join()

    assert took < 2 and report.messages == 1
    assert remaining() == {"held@example.com"}
    assert not Message.objects.filter(pk=other.pk).exists()
    assert retention_delete(days=30, duty=1).messages == 1  # the next run takes it


def test_it_sleeps_in_proportion_to_its_work_to_keep_its_duty_cycle(monkeypatch: Any) -> None:
    import time

    slept: list[float] = []
    monkeypatch.setattr("notifications.retention.time.sleep", slept.append)
    for i in range(4):
        message(f"old{i}@example.com", age_days=40)

    started = time.monotonic()
    report = retention_delete(days=30, batch=1, duty=0.25)
    worked = time.monotonic() - started  # the sleeps were not slept

    assert report.messages == 4 and len(slept) == 4
    assert all(s > 0 for s in slept)
    # Busy a quarter of the time: it sleeps three times what it worked.
    assert 3 * worked * 0.5 < sum(slept) <= 3 * worked
    slept.clear()
    message("capped@example.com", age_days=40)
    retention_delete(days=30, duty=0.01, budget=0.5)  # a long pause is cut at the budget
    assert slept and max(slept) <= 0.5
    slept.clear()
    message("again@example.com", age_days=40)
    retention_delete(days=30, duty=1)
    assert slept == []


def test_the_queue_table_is_vacuumed_after_two_percent_changed_on_postgresql() -> None:
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("per-table autovacuum settings are PostgreSQL's")
    with connection.cursor() as cursor:
        cursor.execute("SELECT reloptions FROM pg_class WHERE relname = 'notifications_message'")
        options = set(cursor.fetchone()[0] or [])
    assert {"autovacuum_vacuum_scale_factor=0.02",
            "autovacuum_analyze_scale_factor=0.02"} <= options
