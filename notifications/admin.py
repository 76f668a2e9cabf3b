"""Operator views: messages with their attempt log, event types, producers, queue stats.

Admin actions call services; nothing here writes a status field itself.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import path

from notifications.content import message_render
from notifications.models import ApiKey, AuditEntry, DeliveryAttempt, EventType, Message, Producer
from notifications.producers import api_key_create, api_key_revoke
from notifications.selectors import queue_stats
from notifications.services import message_cancel
from templates_app.exceptions import TemplateRenderError
from templates_app.rendering import RenderedEmail


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    fields = ("number", "started_at", "duration_ms", "outcome", "error_class", "error_code",
              "error_message", "provider", "provider_message_id", "worker")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ("id", "event_type", "to_email", "lane", "priority", "status", "attempts",
                    "next_attempt_at", "created_at")
    list_filter = ("status", "lane", "event_type")
    search_fields = ("to_email", "idempotency_key", "=id", "provider_message_id")
    list_select_related = ("event_type",)
    date_hierarchy = "created_at"
    inlines = [DeliveryAttemptInline]
    actions = ["cancel_messages"]
    readonly_fields = [f.name for f in Message._meta.fields] + [
        "rendered_subject", "rendered_text", "rendered_html"]
    fieldsets = (
        (None, {"fields": ("id", "event_type", "producer", "idempotency_key", "status",
                           "dead_reason", "last_error")}),
        ("Recipient", {"fields": ("to_email", "to_name", "locale", "data")}),
        ("Email (rendered now from the pinned version, as the drain renders it)",
         {"fields": ("template_version", "rendered_subject", "rendered_text", "rendered_html")}),
        ("Delivery", {"fields": ("lane", "priority", "attempts", "max_attempts",
                                 "next_attempt_at", "expires_at", "lease_until", "lease_token",
                                 "provider", "provider_message_id", "sent_at", "created_at",
                                 "updated_at")}),
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # messages come from notify(), so they are validated

    def _rendered(self, obj: Message) -> RenderedEmail | str:
        # Rendered per field (three renders of one email are cheap next to a page load).
        try:
            return message_render(obj)
        except TemplateRenderError as exc:
            return f"Does not render: {exc}"

    @admin.display(description="Subject")
    def rendered_subject(self, obj: Message) -> str:
        email = self._rendered(obj)
        return email if isinstance(email, str) else email.subject

    @admin.display(description="Text part")
    def rendered_text(self, obj: Message) -> str:
        email = self._rendered(obj)
        return email if isinstance(email, str) else email.text

    @admin.display(description="HTML part (source)")
    def rendered_html(self, obj: Message) -> str:
        email = self._rendered(obj)
        return email if isinstance(email, str) else email.html

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None  # the list is browsable; a message is read-only

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the queue of record keeps its history; cancel instead

    def get_urls(self) -> list[Any]:
        custom = [
            path("stats/", self.admin_site.admin_view(self.stats_view),
                 name="notifications_message_stats"),
        ]
        return custom + super().get_urls()

    def stats_view(self, request: HttpRequest) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": "Queue stats",
            "stats": queue_stats(),
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/notifications/queue_stats.html", context)

    @admin.action(description="Cancel selected messages (only those not sent yet)")
    def cancel_messages(self, request: HttpRequest, queryset: QuerySet[Message]) -> None:
        cancelled = sum(message_cancel(message=m) for m in queryset)
        skipped = queryset.count() - cancelled
        self.message_user(request, f"Cancelled {cancelled} message(s).", messages.SUCCESS)
        if skipped:
            self.message_user(
                request, f"{skipped} message(s) were already sent, dead or cancelled; left as is.",
                messages.WARNING,
            )


@admin.register(EventType)
class EventTypeAdmin(admin.ModelAdmin):
    list_display = ("key", "template", "lane", "priority", "max_attempts", "expiry", "is_active")
    list_filter = ("lane", "is_active")
    search_fields = ("key", "description")


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    extra = 0
    can_delete = False
    fields = ("prefix", "name", "created_at", "revoked_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # keys are made by the action below, which shows the token once


@admin.register(Producer)
class ProducerAdmin(admin.ModelAdmin):
    list_display = ("name", "is_active", "rate_limit_per_second", "created_at")
    filter_horizontal = ("allowed_event_types",)
    inlines = [ApiKeyInline]
    actions = ["create_key"]

    @admin.action(description="Create an API key (the token is shown once)")
    def create_key(self, request: HttpRequest, queryset: QuerySet[Producer]) -> None:
        for producer in queryset:
            key, token = api_key_create(producer=producer, name=f"admin:{request.user}")
            self.message_user(
                request, f"New key for {producer.name} ({key.prefix}); copy it now, it is not "
                f"stored: {token}", messages.WARNING,
            )


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("prefix", "producer", "name", "created_at", "revoked_at")
    list_filter = ("producer", ("revoked_at", admin.EmptyFieldListFilter))
    readonly_fields = ("producer", "prefix", "name", "created_at", "revoked_at")
    exclude = ("key_hash",)
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Revoke selected keys (takes effect at once)")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for key in queryset:
            api_key_revoke(key=key)
        self.message_user(request, f"Revoked {queryset.count()} key(s).", messages.SUCCESS)


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    """Append-only: nobody adds, changes or deletes an entry (notifications/audit.py writes)."""

    list_display = ("at", "username", "action", "target", "count", "reason")
    list_filter = ("action", "username")
    search_fields = ("target", "reason", "username")
    date_hierarchy = "at"
    readonly_fields = ("at", "user", "username", "action", "target", "filter", "count", "reason")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
