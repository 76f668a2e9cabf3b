from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from dlq import operations
from dlq.models import Operation, OperationKind, OperationStatus
from dlq.operations import (
    InvalidOperation,
    operation_cancel,
    operation_create,
    operation_enqueue,
    operation_retry,
    operation_run,
    operations_resume_stale,
)
from dlq.selectors import DeadLetterFilter, Skip
from notifications.models import AuditAction, AuditEntry, DeadReason, Message, Status
from tests.dlq.helpers import dead_message

pytestmark = pytest.mark.usefixtures("demo", "no_wakeups")


@pytest.fixture
def enqueued(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(operations, "async_task",
                        lambda *args, **kwargs: calls.append((*args, kwargs["cluster"])))
    return calls


class FakeClock:
    """time.monotonic and time.sleep for the task: sleeping advances the clock."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def statuses() -> dict[str, int]:
    out: dict[str, int] = {}
    for status in Message.objects.values_list("status", flat=True):
        out[status] = out.get(status, 0) + 1
    return out


def test_it_requeues_in_chunks_and_audits_start_and_end(settings: Any,
                                                         enqueued: list[Any]) -> None:
    settings.NOTIFY_DLQ = {**settings.NOTIFY_DLQ, "CHUNK_SIZE": 2}
    for n in range(5):
        dead_message(f"u{n}@example.com")
    old = dead_message("old@example.com", created_at=timezone.now() - timedelta(days=3))

    operation = operation_create(kind="requeue", flt=DeadLetterFilter(), reason="SMTP fixed",
                                 user="alice")
    ran = operation_run(operation.pk, budget=60)

    assert ran is not None
    assert (ran.status, ran.total, ran.done, ran.skipped) == (
        OperationStatus.DONE, 6, 5, {Skip.EXPIRED: 1})
    assert ran.cursor == old.pk and ran.percent == 100
    assert statuses() == {Status.PENDING: 5, Status.DEAD: 1}
    entries = list(AuditEntry.objects.order_by("id").values_list(
        "action", "username", "count", "reason"))
    assert entries == [(AuditAction.REQUEUE, "alice", 6, "SMTP fixed"),
                       (AuditAction.REQUEUE, "alice", 5, "SMTP fixed")]
    assert AuditEntry.objects.order_by("id").last().filter["skipped"] == {"expired": 1}


def test_it_keeps_the_pace_between_chunks(settings: Any, enqueued: list[Any]) -> None:
    settings.NOTIFY_DLQ = {**settings.NOTIFY_DLQ, "CHUNK_SIZE": 100}
    for n in range(5):
        dead_message(f"u{n}@example.com")
    clock = FakeClock()
    operation = operation_create(kind="discard", flt=DeadLetterFilter(), reason="spam",
                                 user="alice", pace=2)

    ran = operation_run(operation.pk, budget=60, sleep=clock.sleep, clock=clock)

    # Two per second: chunks of 2, 2, 1, each followed by the sleep that keeps the rate.
    assert ran is not None and ran.status == OperationStatus.DONE
    assert clock.slept == [1.0, 1.0, 0.5]
    assert statuses() == {Status.CANCELLED: 5}


def test_a_spent_budget_saves_progress_and_queues_the_successor(
    settings: Any, enqueued: list[Any],
) -> None:
    settings.NOTIFY_DLQ = {**settings.NOTIFY_DLQ, "CHUNK_SIZE": 100}
    for n in range(3):
        dead_message(f"u{n}@example.com")
    clock = FakeClock()
    operation = operation_create(kind="requeue", flt=DeadLetterFilter(), reason="r",
                                 user="alice", pace=1)

    ran = operation_run(operation.pk, budget=1.5, sleep=clock.sleep, clock=clock)

    assert ran is not None
    assert (ran.status, ran.done, ran.lease_until) == (OperationStatus.RUNNING, 2, None)
    assert enqueued == [("dlq.tasks.operation_run", operation.pk, "bulk")]
    # The successor goes on from the cursor and finishes.
    assert operation_run(operation.pk, budget=60).status == OperationStatus.DONE
    assert Operation.objects.get(pk=operation.pk).done == 3


def test_cancel_stops_it_between_chunks_and_is_audited(settings: Any,
                                                       enqueued: list[Any]) -> None:
    settings.NOTIFY_DLQ = {**settings.NOTIFY_DLQ, "CHUNK_SIZE": 1}
    for n in range(4):
        dead_message(f"u{n}@example.com")
    operation = operation_create(kind="requeue", flt=DeadLetterFilter(), reason="r",
                                 user="alice")

    def sleep_then_cancel(seconds: float) -> None:
        operation_cancel(operation=operation, user="bob")

    operation.pace = 1000.0
    Operation.objects.filter(pk=operation.pk).update(pace=1000.0)
    clock = FakeClock()
    ran = operation_run(operation.pk, budget=60, sleep=sleep_then_cancel, clock=clock)

    assert ran is not None and (ran.status, ran.done) == (OperationStatus.CANCELLED, 1)
    assert statuses() == {Status.PENDING: 1, Status.DEAD: 3}
    assert AuditEntry.objects.filter(action=AuditAction.OPERATION_CANCEL,
                                     username="bob").count() == 1
    assert operation_cancel(operation=operation, user="bob") is False  # it has ended


def test_cancelling_before_any_task_ran_ends_it_at_once(enqueued: list[Any]) -> None:
    dead_message()
    operation = operation_create(kind="discard", flt=DeadLetterFilter(), reason="r", user="a")

    assert operation_cancel(operation=operation, user="a") is True

    assert Operation.objects.get(pk=operation.pk).status == OperationStatus.CANCELLED
    assert operation_run(operation.pk, budget=60) is None
    assert statuses() == {Status.DEAD: 1}


def test_a_dead_worker_leaves_it_resumable_from_the_cursor(
    settings: Any, enqueued: list[Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings.NOTIFY_DLQ = {**settings.NOTIFY_DLQ, "CHUNK_SIZE": 1}
    first, second = dead_message("a@example.com"), dead_message("b@example.com")
    operation = operation_create(kind="requeue", flt=DeadLetterFilter(), reason="r", user="a")

    class WorkerKilled(BaseException):
        pass

    calls = {"n": 0}
    real = operations._run_chunk

    def die_on_second(*args: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise WorkerKilled  # like SIGKILL: no cleanup runs
        return real(*args)

    monkeypatch.setattr(operations, "_run_chunk", die_on_second)
    with pytest.raises(WorkerKilled):
        operation_run(operation.pk, budget=60)
    monkeypatch.setattr(operations, "_run_chunk", real)

    stuck = Operation.objects.get(pk=operation.pk)
    assert (stuck.status, stuck.done, stuck.cursor) == (OperationStatus.RUNNING, 1, first.pk)
    assert operation_run(operation.pk, budget=60) is None  # its lease still holds
    assert operations_resume_stale() == []
    Operation.objects.filter(pk=operation.pk).update(
        lease_until=timezone.now() - timedelta(seconds=1))
    assert operations_resume_stale() == [operation.pk]
    assert operation_run(operation.pk, budget=60).status == OperationStatus.DONE
    assert Message.objects.get(pk=second.pk).status == Status.PENDING
    assert Operation.objects.get(pk=operation.pk).done == 2


def test_a_failing_chunk_rolls_back_and_marks_it_failed(
    enqueued: list[Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    dead = dead_message()
    operation = operation_create(kind="discard", flt=DeadLetterFilter(), reason="r", user="a")

    def boom(**kwargs: Any) -> Any:
        from notifications import transitions
        transitions.discard(kwargs["pks"])
        raise RuntimeError("disk full")

    monkeypatch.setattr(operations, "dead_letters_discard", boom)
    ran = operation_run(operation.pk, budget=60)

    assert ran is not None and ran.status == OperationStatus.FAILED
    assert "disk full" in ran.error
    assert Message.objects.get(pk=dead.pk).status == Status.DEAD


def test_a_retried_failed_operation_goes_on_from_where_it_stopped(
    settings: Any, enqueued: list[Any], monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    settings.NOTIFY_DLQ = {**settings.NOTIFY_DLQ, "CHUNK_SIZE": 2}
    letters = [dead_message(f"u{n}@example.com") for n in range(5)]
    operation = operation_create(kind="requeue", flt=DeadLetterFilter(), reason="SMTP fixed",
                                 user="alice")
    real = operations.dead_letters_requeue
    chunks: list[list[int]] = []

    def fails_on_the_second_chunk_once(**kwargs: Any) -> Any:
        chunks.append(list(kwargs["pks"]))
        if len(chunks) == 2:
            real(**kwargs)  # its moves roll back with the chunk
            raise RuntimeError("could not serialize access")
        return real(**kwargs)

    monkeypatch.setattr(operations, "dead_letters_requeue", fails_on_the_second_chunk_once)
    failed = operation_run(operation.pk, budget=60)

    assert failed is not None and failed.status == OperationStatus.FAILED
    assert (failed.done, failed.cursor) == (2, letters[1].pk)
    assert statuses() == {Status.PENDING: 2, Status.DEAD: 3}
    assert operations_resume_stale() == []  # a failure waits for an operator
    # A letter of the committed chunk died again meanwhile: a restart from the beginning would
    # requeue it a second time; going on from the cursor leaves it to a new operation.
    Message.objects.filter(pk=letters[0].pk).update(status=Status.DEAD)

    with django_capture_on_commit_callbacks(execute=True):
        assert operation_retry(operation=failed, user="bob") is True
    assert operation_retry(operation=failed, user="bob") is False  # a second click: nothing
    assert enqueued == [("dlq.tasks.operation_run", operation.pk, "bulk")]
    done = operation_run(operation.pk, budget=60)

    assert done is not None
    assert (done.status, done.done, done.error) == (OperationStatus.DONE, 5, "")
    assert chunks[2:] == [[letters[2].pk, letters[3].pk], [letters[4].pk]]
    assert Message.objects.get(pk=letters[0].pk).status == Status.DEAD
    assert statuses() == {Status.PENDING: 4, Status.DEAD: 1}
    entries = list(AuditEntry.objects.order_by("id").values_list(
        "action", "username", "count"))
    assert entries == [(AuditAction.REQUEUE, "alice", 5), (AuditAction.REQUEUE, "alice", 2),
                       (AuditAction.OPERATION_RETRY, "bob", 2),
                       (AuditAction.REQUEUE, "alice", 5)]
    retry_entry = AuditEntry.objects.get(action=AuditAction.OPERATION_RETRY)
    assert "could not serialize access" in retry_entry.reason
    assert retry_entry.filter["cursor"] == letters[1].pk


@pytest.mark.parametrize("status", [OperationStatus.PENDING, OperationStatus.RUNNING,
                                    OperationStatus.DONE, OperationStatus.CANCELLED])
def test_only_a_failed_operation_can_be_retried(enqueued: list[Any],
                                                status: OperationStatus) -> None:
    dead_message()
    operation = operation_create(kind="discard", flt=DeadLetterFilter(), reason="r", user="a")
    Operation.objects.filter(pk=operation.pk).update(status=status)

    assert operation_retry(operation=operation, user="bob") is False
    assert Operation.objects.get(pk=operation.pk).status == status
    assert not AuditEntry.objects.filter(action=AuditAction.OPERATION_RETRY).exists()


def test_it_acts_only_on_rows_dead_when_it_was_created(enqueued: list[Any]) -> None:
    before = dead_message("a@example.com", reason=DeadReason.PERMANENT_ERROR)
    operation = operation_create(kind="discard", flt=DeadLetterFilter(), reason="r", user="a")
    after = dead_message("b@example.com", reason=DeadReason.PERMANENT_ERROR)

    operation_run(operation.pk, budget=60)

    assert Message.objects.get(pk=before.pk).status == Status.CANCELLED
    assert Message.objects.get(pk=after.pk).status == Status.DEAD


def test_enqueue_targets_the_dlq_cluster_on_commit(
    enqueued: list[Any], django_capture_on_commit_callbacks: Any,
) -> None:
    operation = operation_create(kind="discard", flt=DeadLetterFilter(), reason="r", user="a")
    with django_capture_on_commit_callbacks(execute=True):
        operation_enqueue(operation)
    assert enqueued == [("dlq.tasks.operation_run", operation.pk, "bulk")]


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"reason": "  "}, "reason: say why"),
    ({"pace": 0}, "pace:"),
    ({"pace": float("nan")}, "pace:"),
    ({"repin": "latest"}, "repin:"),
    ({"kind": "delete"}, "kind:"),
])
def test_a_bad_request_is_refused(kwargs: dict[str, Any], error: str) -> None:
    args = {"kind": OperationKind.REQUEUE, "flt": DeadLetterFilter(), "reason": "r",
            "user": "a", **kwargs}
    with pytest.raises(InvalidOperation, match=error):
        operation_create(**args)
    assert not Operation.objects.exists() and not AuditEntry.objects.exists()
