"""The dead letter queue in the admin: the list (filters, search, "may have been sent"), the
grouped view, the confirmation page with the dry run, the operation progress page, CSV export.

Requeue and discard never happen in the request: the confirmation page creates an Operation
(dlq/operations.py) and queues its task. Viewers see everything; acting needs
dlq.requeue_deadletter / dlq.discard_deadletter, checked on every action URL (403 otherwise).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef, QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from dlq.admin_filters import (
    DiedFilter,
    DomainFilter,
    EventTypeFilter,
    LaneFilter,
    ReasonFilter,
    SignatureFilter,
    SinceFilter,
    UntilFilter,
    filter_from_request,
)
from dlq.models import DeadLetter, Operation, OperationKind, OperationStatus, RePin
from dlq.operations import (
    MAX_PACE,
    MIN_PACE,
    InvalidOperation,
    operation_cancel,
    operation_create,
    operation_enqueue,
    operation_retry,
)
from dlq.selectors import (
    MAYBE_SENT,
    DeadLetterFilter,
    InvalidFilter,
    dead_letter_groups,
    may_have_been_sent,
    preview,
    search_q,
)
from notifications.admin import DeliveryAttemptInline, ReadOnlyAdmin
from notifications.content import message_render
from notifications.delivery import message_id_for
from notifications.exports import csv_response
from notifications.models import DeliveryAttempt
from templates_app.exceptions import TemplateRenderError

PERMS: dict[str, str] = {OperationKind.REQUEUE: "dlq.requeue_deadletter",
         OperationKind.DISCARD: "dlq.discard_deadletter"}


def _require(request: HttpRequest, kind: str) -> None:
    if kind not in PERMS:
        raise Http404("no such operation")
    if not request.user.has_perm(PERMS[kind]):
        raise PermissionDenied


class ConfirmForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
                             max_length=2000, help_text="Required: it goes into the audit log.")
    pace = forms.FloatField(required=False, min_value=MIN_PACE, max_value=MAX_PACE,
                            help_text="Messages per second at most (empty: as fast as it goes).")
    repin = forms.ChoiceField(choices=RePin.choices, initial=RePin.FAILED_ONLY,
                              widget=forms.RadioSelect, label="Template version")
    include_expired = forms.BooleanField(
        required=False, label="Also requeue messages past their expiry",
        help_text="A stale password reset should not go out days late: leave this off unless "
                  "you are sure.")

    def __init__(self, *args: Any, kind: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if kind != OperationKind.REQUEUE:
            del self.fields["repin"]
            del self.fields["include_expired"]

    def clean_reason(self) -> str:
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError("Say why.")
        return reason


@admin.register(DeadLetter)
class DeadLetterAdmin(admin.ModelAdmin):
    list_display = ("id", "event_type", "to_email", "lane", "dead_reason", "attempts",
                    "short_error", "maybe_sent", "updated_at")
    list_filter = (ReasonFilter, LaneFilter, EventTypeFilter, DomainFilter, DiedFilter,
                   SignatureFilter, SinceFilter, UntilFilter)
    list_select_related = ("event_type",)
    search_fields = ("to_email",)  # shows the search box; get_search_results does the search
    search_help_text = "Recipient, message id, idempotency key or Message-ID"
    show_full_result_count = False
    list_per_page = 100
    inlines = [DeliveryAttemptInline]
    actions = ["requeue_selected", "discard_selected"]
    readonly_fields = ("id", "event_type", "producer", "idempotency_key", "status",
                       "dead_reason", "last_error", "failure_group", "may_have_been_sent_note",
                       "message_id", "to_email", "to_name", "locale", "data",
                       "template_version", "rendered_subject", "rendered_text", "lane",
                       "priority", "attempts", "max_attempts", "next_attempt_at", "expires_at",
                       "provider", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("id", "event_type", "producer", "idempotency_key", "status",
                           "dead_reason", "last_error", "failure_group",
                           "may_have_been_sent_note", "message_id")}),
        ("Recipient", {"fields": ("to_email", "to_name", "locale", "data")}),
        ("Email (rendered now from the pinned version)",
         {"fields": ("template_version", "rendered_subject", "rendered_text")}),
        ("Delivery", {"fields": ("lane", "priority", "attempts", "max_attempts",
                                 "next_attempt_at", "expires_at", "provider", "created_at",
                                 "updated_at")}),
    )

    # --- permissions ---------------------------------------------------------------------------

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # read-only: requeue and discard are operations

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_requeue_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(PERMS[OperationKind.REQUEUE])

    def has_discard_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(PERMS[OperationKind.DISCARD])

    # --- list ----------------------------------------------------------------------------------

    def get_queryset(self, request: HttpRequest) -> QuerySet[DeadLetter]:
        maybe = DeliveryAttempt.objects.filter(message=OuterRef("pk"), outcome__in=MAYBE_SENT)
        # EXISTS per row of the page only (the list is paginated); the detail page uses it too.
        return super().get_queryset(request).annotate(maybe_sent_flag=Exists(maybe))

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Any],
                           search_term: str) -> tuple[QuerySet[Any], bool]:
        if not search_term.strip():
            return queryset, False
        return queryset.filter(search_q(search_term)), False

    @admin.display(description="last error")
    def short_error(self, obj: DeadLetter) -> str:
        return (obj.last_error[:80] + "…") if len(obj.last_error) > 80 else obj.last_error

    @admin.display(description="may have been sent", boolean=True)
    def maybe_sent(self, obj: DeadLetter) -> bool:
        return bool(getattr(obj, "maybe_sent_flag", False))

    def changelist_view(self, request: HttpRequest,
                        extra_context: dict[str, Any] | None = None) -> HttpResponse:
        # An action this user may not run is refused outright, not just missing from the menu.
        action = request.POST.get("action", "") if request.method == "POST" else ""
        if action == "requeue_selected":
            _require(request, OperationKind.REQUEUE)
        elif action == "discard_selected":
            _require(request, OperationKind.DISCARD)
        query = request.GET.urlencode()
        context = {
            **(extra_context or {}),
            "dlq_query": query,
            "can_requeue": self.has_requeue_permission(request),
            "can_discard": self.has_discard_permission(request),
        }
        return super().changelist_view(request, extra_context=context)

    # --- detail --------------------------------------------------------------------------------

    def _rendered(self, obj: DeadLetter) -> Any:
        try:
            return message_render(obj)
        except TemplateRenderError as exc:
            return f"Does not render: {exc}"

    @admin.display(description="Subject")
    def rendered_subject(self, obj: DeadLetter) -> str:
        email = self._rendered(obj)
        return email if isinstance(email, str) else email.subject

    @admin.display(description="Text part")
    def rendered_text(self, obj: DeadLetter) -> str:
        email = self._rendered(obj)
        return email if isinstance(email, str) else email.text

    @admin.display(description="Message-ID")
    def message_id(self, obj: DeadLetter) -> str:
        return message_id_for(obj.pk)

    @admin.display(description="Failure group")
    def failure_group(self, obj: DeadLetter) -> str:
        if not obj.failure_signature:
            return "-"
        url = reverse("admin:dlq_deadletter_changelist") + "?" + urlencode(
            {"signature": obj.failure_signature})
        return format_html('<a href="{}">{}</a>', url, obj.failure_signature)

    @admin.display(description="May have been sent")
    def may_have_been_sent_note(self, obj: DeadLetter) -> str:
        if obj.pk in may_have_been_sent([obj.pk]):
            return ("Yes: an attempt's outcome was unknown (a timeout after sending, or a lost "
                    "worker). The email may have been sent; a requeue may send it twice.")
        return "No: every attempt was refused or never sent."

    # --- actions -------------------------------------------------------------------------------

    def _confirm_redirect(self, request: HttpRequest, kind: str,
                          queryset: QuerySet[Any]) -> HttpResponseRedirect:
        if request.POST.get("select_across") == "1":
            params = request.GET.copy()  # everything matching the current filter
        else:
            params = request.GET.copy()
            params.setlist("pks", [",".join(request.POST.getlist(ACTION_CHECKBOX_NAME))])
        url = reverse("admin:dlq_deadletter_confirm", args=[kind])
        return HttpResponseRedirect(f"{url}?{params.urlencode()}")

    @admin.action(description="Requeue selected dead letters…", permissions=["requeue"])
    def requeue_selected(self, request: HttpRequest,
                         queryset: QuerySet[DeadLetter]) -> HttpResponseRedirect:
        return self._confirm_redirect(request, OperationKind.REQUEUE, queryset)

    @admin.action(description="Discard selected dead letters…", permissions=["discard"])
    def discard_selected(self, request: HttpRequest,
                         queryset: QuerySet[DeadLetter]) -> HttpResponseRedirect:
        return self._confirm_redirect(request, OperationKind.DISCARD, queryset)

    # --- custom pages --------------------------------------------------------------------------

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view
        return [
            path("groups/", view(self.groups_view), name="dlq_deadletter_groups"),
            path("export/", view(self.export_view), name="dlq_deadletter_export"),
            path("confirm/<str:kind>/", view(self.confirm_view), name="dlq_deadletter_confirm"),
            path("operations/<int:pk>/", view(self.operation_view),
                 name="dlq_operation_progress"),
            path("operations/<int:pk>/cancel/", view(self.operation_cancel_view),
                 name="dlq_operation_cancel"),
            path("operations/<int:pk>/retry/", view(self.operation_retry_view),
                 name="dlq_operation_retry"),
        ] + super().get_urls()

    def _context(self, request: HttpRequest, title: str, **extra: Any) -> dict[str, Any]:
        return {**self.admin_site.each_context(request), "title": title,
                "opts": self.model._meta, **extra}

    def _filter_or_message(self, request: HttpRequest,
                           pks: Any = None) -> DeadLetterFilter | HttpResponseRedirect:
        try:
            return filter_from_request(request.GET, pks=pks)
        except InvalidFilter as exc:
            self.message_user(request, f"Bad filter: {exc}", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:dlq_deadletter_changelist"))

    def groups_view(self, request: HttpRequest) -> HttpResponseBase:
        if not self.has_view_permission(request):
            raise PermissionDenied
        flt = self._filter_or_message(request)
        if isinstance(flt, HttpResponseRedirect):
            return flt
        changelist = reverse("admin:dlq_deadletter_changelist")
        base = request.GET.copy()
        rows = []
        for group in dead_letter_groups(flt):
            params = base.copy()
            params["signature"] = group.signature
            query = params.urlencode()
            rows.append({"group": group, "query": query,
                         "list_url": f"{changelist}?{query}"})
        return TemplateResponse(request, "admin/dlq/groups.html", self._context(
            request, "Dead letters by failure", groups=rows, filter=flt,
            can_requeue=self.has_requeue_permission(request),
            can_discard=self.has_discard_permission(request)))

    def export_view(self, request: HttpRequest) -> HttpResponseBase:
        if not self.has_view_permission(request):
            raise PermissionDenied
        flt = self._filter_or_message(request)
        if isinstance(flt, HttpResponseRedirect):
            return flt
        header = ["id", "event_type", "to_email", "lane", "dead_reason", "attempts",
                  "failure_signature", "last_error", "created_at", "died_at"]
        rows = flt.queryset().order_by("-id").values_list(
            "id", "event_type__key", "to_email", "lane", "dead_reason", "attempts",
            "failure_signature", "last_error", "created_at", "updated_at").iterator()
        return csv_response("dead-letters.csv", header, rows)

    def confirm_view(self, request: HttpRequest, kind: str) -> HttpResponseBase:
        _require(request, kind)
        if request.method not in ("GET", "POST"):
            return HttpResponseNotAllowed(["GET", "POST"])
        flt = self._filter_or_message(request)
        if isinstance(flt, HttpResponseRedirect):
            return flt
        form = ConfirmForm(request.POST or None, kind=kind)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                operation = operation_create(
                    kind=kind, flt=flt, reason=data["reason"], user=request.user,
                    pace=data.get("pace"), repin=data.get("repin") or RePin.FAILED_ONLY,
                    include_expired=bool(data.get("include_expired")))
            except InvalidOperation as exc:
                form.add_error(None, str(exc))
            else:
                operation_enqueue(operation)
                self.message_user(request, f"Operation #{operation.pk} started: {kind} of "
                                           f"{operation.total} dead letter(s).", messages.SUCCESS)
                return HttpResponseRedirect(
                    reverse("admin:dlq_operation_progress", args=[operation.pk]))
        include_expired = form.is_bound and form.data.get("include_expired") in ("on", "true")
        dry_run = preview(flt, kind=kind, include_expired=include_expired)
        return TemplateResponse(request, "admin/dlq/confirm.html", self._context(
            request, f"{kind.capitalize()} dead letters: confirm", kind=kind, form=form,
            preview=dry_run, filter=flt, query=request.GET.urlencode(),
            back=reverse("admin:dlq_deadletter_changelist") + "?" + urlencode(
                {k: v for k, v in request.GET.items() if k != "pks"})))

    def operation_view(self, request: HttpRequest, pk: int) -> HttpResponseBase:
        if not request.user.has_perm("dlq.view_operation"):
            raise PermissionDenied
        operation = get_object_or_404(Operation, pk=pk)
        can_act = request.user.has_perm(PERMS[OperationKind(operation.kind)])
        return TemplateResponse(request, "admin/dlq/operation.html", self._context(
            request, f"Operation #{operation.pk}: {operation.get_kind_display().lower()}",
            operation=operation, can_cancel=can_act and not operation.is_final,
            can_retry=can_act and operation.status == OperationStatus.FAILED,
            skipped_rows=sorted(operation.skipped.items()),
            filter_text=DeadLetterFilter.from_params(operation.filter).describe()))

    def operation_cancel_view(self, request: HttpRequest, pk: int) -> HttpResponseBase:
        operation = get_object_or_404(Operation, pk=pk)
        _require(request, operation.kind)
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if operation_cancel(operation=operation, user=request.user):
            self.message_user(request, f"Operation #{pk}: cancel requested; it stops after "
                                       "the chunk in progress.", messages.WARNING)
        else:
            self.message_user(request, f"Operation #{pk} had already ended.", messages.INFO)
        return HttpResponseRedirect(reverse("admin:dlq_operation_progress", args=[pk]))

    def operation_retry_view(self, request: HttpRequest, pk: int) -> HttpResponseBase:
        operation = get_object_or_404(Operation, pk=pk)
        _require(request, operation.kind)
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if operation_retry(operation=operation, user=request.user):
            where = (f"after message #{operation.cursor}" if operation.cursor
                     else "from the start")
            self.message_user(request, f"Operation #{pk} restarted: it goes on {where}; what "
                                       "it did before the error stays done.", messages.SUCCESS)
        else:
            self.message_user(request, f"Operation #{pk} has not failed: nothing to retry.",
                              messages.INFO)
        return HttpResponseRedirect(reverse("admin:dlq_operation_progress", args=[pk]))


@admin.register(Operation)
class OperationAdmin(ReadOnlyAdmin):
    list_display = ("id", "progress_link", "kind", "status", "total", "done", "skipped_total",
                    "created_by_name", "created_at", "finished_at")
    list_filter = ("kind", "status")
    show_full_result_count = False

    @admin.display(description="progress")
    def progress_link(self, obj: Operation) -> str:
        url = reverse("admin:dlq_operation_progress", args=[obj.pk])
        return format_html('<a href="{}">{}%</a>', url, obj.percent)

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if not object_id.isdigit():
            raise Http404
        return HttpResponseRedirect(reverse("admin:dlq_operation_progress",
                                            args=[int(object_id)]))
