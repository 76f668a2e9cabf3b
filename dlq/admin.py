"""DLQ inspection and requeue. Requeue goes through the service, which resets the bookkeeping."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import QuerySet
from django.http import HttpRequest

from dlq.models import DeadLetter
from notifications.admin import DeliveryAttemptInline, MessageAdmin
from notifications.services import messages_requeue


@admin.register(DeadLetter)
class DeadLetterAdmin(MessageAdmin):
    list_display = ("id", "event_type", "to_email", "lane", "dead_reason", "attempts",
                    "short_error", "updated_at")
    list_filter = ("dead_reason", "lane", "event_type")
    inlines = [DeliveryAttemptInline]
    actions = ["requeue"]

    @admin.display(description="last error")
    def short_error(self, obj: DeadLetter) -> str:
        return (obj.last_error[:80] + "…") if len(obj.last_error) > 80 else obj.last_error

    def get_urls(self) -> list[Any]:
        return admin.ModelAdmin.get_urls(self)

    @admin.action(description="Requeue selected dead letters (fresh attempts)")
    def requeue(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        moved = messages_requeue(pks=queryset.values_list("pk", flat=True))
        self.message_user(request, f"Requeued {moved} message(s).", messages.SUCCESS)
        if request.POST.get("select_across") != "1":
            skipped = len(request.POST.getlist(ACTION_CHECKBOX_NAME)) - moved
            if skipped > 0:
                self.message_user(
                    request, f"{skipped} selected message(s) were no longer dead letters "
                    "(requeued or handled meanwhile); left as they are.", messages.WARNING)
