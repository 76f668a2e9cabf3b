"""The dead letter queue is a view of Message rows with status `dead`: nothing is copied.

Operation tracks one requeue or discard of many dead letters (dlq/operations.py runs it in
chunks); AlertState remembers which alert conditions are firing (dlq/alerts.py).
"""

from __future__ import annotations

from typing import ClassVar

from django.conf import settings
from django.db import models

from notifications.models import Message, Status


class DeadLetterManager(models.Manager["DeadLetter"]):
    def get_queryset(self) -> models.QuerySet[DeadLetter]:
        return super().get_queryset().filter(status=Status.DEAD)


class DeadLetter(Message):
    objects: ClassVar[DeadLetterManager] = DeadLetterManager()

    class Meta:
        proxy = True
        verbose_name = "dead letter"
        verbose_name_plural = "dead letters"
        permissions = [
            ("requeue_deadletter", "Can requeue dead letters"),
            ("discard_deadletter", "Can discard dead letters"),
        ]


class OperationKind(models.TextChoices):
    REQUEUE = "requeue", "Requeue"
    DISCARD = "discard", "Discard"


class OperationStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    CANCELLED = "cancelled", "Cancelled"
    FAILED = "failed", "Failed"


FINAL_STATUSES = (OperationStatus.DONE, OperationStatus.CANCELLED, OperationStatus.FAILED)


class RePin(models.TextChoices):
    """Which template version a requeued message renders with."""

    FAILED_ONLY = "failed_only", ("Keep the pinned version, except messages whose template did "
                                  "not render: re-pin those to the active version")
    KEEP = "keep", "Keep the pinned version (the email as it was queued)"
    ACTIVE = "active", "Re-pin every message to the active version"


class Operation(models.Model):
    """One requeue or discard of the dead letters matching a filter, worked in chunks by a task.

    Written only by dlq/operations.py. `cursor` is the last message id handled: the task goes
    through the matching rows in id order up to `max_pk` (the newest dead letter when it was
    created, so messages dying meanwhile are not chased), saving the cursor with each chunk in
    the chunk's transaction, so a worker that dies loses nothing and repeats nothing.
    """

    kind = models.CharField(max_length=20, choices=OperationKind.choices)
    filter = models.JSONField(default=dict, help_text="The DeadLetterFilter acted on.")
    reason = models.TextField(help_text="Why (required; in the audit log).")
    pace = models.FloatField(null=True, blank=True,
                             help_text="Messages per second at most; empty = as fast as it goes.")
    repin = models.CharField(max_length=20, choices=RePin.choices, default=RePin.FAILED_ONLY)
    include_expired = models.BooleanField(
        default=False, help_text="Requeue messages past their expiry too (else skipped).")
    status = models.CharField(max_length=20, choices=OperationStatus.choices,
                              default=OperationStatus.PENDING)
    total = models.PositiveIntegerField(default=0, help_text="Matching when it was created.")
    done = models.PositiveIntegerField(default=0, help_text="Requeued or discarded so far.")
    skipped = models.JSONField(default=dict, blank=True, help_text="Skipped, by reason.")
    cursor = models.BigIntegerField(default=0)
    max_pk = models.BigIntegerField(default=0)
    cancel_requested = models.BooleanField(default=False)
    # A running task holds this lease (renewed each chunk): a second task for the same
    # operation does nothing while it holds, and a stale one lets the operation be resumed.
    lease_until = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    created_by_name = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"#{self.pk} {self.kind} ({self.status})"

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    @property
    def percent(self) -> int:
        if not self.total:
            return 100 if self.is_final else 0
        return min(100, round(100 * (self.done + self.skipped_total) / self.total))


class AlertState(models.Model):
    """One row per alert condition that is firing: it alerts once, and once more when it clears."""

    key = models.CharField(max_length=100, primary_key=True)
    message = models.TextField()
    since = models.DateTimeField()

    def __str__(self) -> str:
        return self.key
