"""The dead letter queue is a view of Message rows with status `dead`: nothing is copied."""

from __future__ import annotations

from django.db import models

from notifications.models import Message, Status


class DeadLetterManager(models.Manager["DeadLetter"]):
    def get_queryset(self) -> models.QuerySet[DeadLetter]:
        return super().get_queryset().filter(status=Status.DEAD)


class DeadLetter(Message):
    objects = DeadLetterManager()

    class Meta:
        proxy = True
        verbose_name = "dead letter"
        verbose_name_plural = "dead letters"
        permissions = [
            ("requeue_deadletter", "Can requeue dead letters"),
            ("discard_deadletter", "Can discard dead letters"),
        ]
