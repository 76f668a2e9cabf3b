"""Operator views of deliverability: the suppression list and the tracking events.

The suppression list: search by address, filters, add one address, remove (deactivate) entries
through a confirmation page with a reason, import and export CSV. Every change goes through
notifications.suppression (or suppression_import, which uses it) and is audited; the admin
never saves a row itself, and nobody deletes one (the rows are history: a removed entry stays,
inactive). Viewers see everything; adding and importing need notifications.add_suppression,
removing needs notifications.change_suppression (both given to `operators`, notifications/
roles.py), checked on every URL, so a viewer's POST is a 403, not a quiet no-op.

Tracking events are read-only: what the ESPs' webhooks said, with the raw payload, matched to
a message or kept as "unknown" (notifications/tracking.py).

Both lists can hold millions of rows: no full COUNT (EstimatingPaginator), searches matched
exactly on indexed columns (migration 0012), filters whose choices are not read from the table.
"""

from __future__ import annotations

import json
from typing import Any

from anymail.signals import EventType as AnymailEventType
from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseBase,
    HttpResponseRedirect,
)
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import urlencode
from email_validator import EmailNotValidError

from notifications import suppression
from notifications.addresses import normalize_email
from notifications.admin import EstimatingPaginator, ReadOnlyAdmin, ReasonConfirmMixin
from notifications.exports import csv_response
from notifications.models import Suppression, SuppressionReason, TrackingEvent
from notifications.selectors import parse_message_id
from notifications.suppression_import import (
    MAX_BYTES,
    MAX_ROWS,
    NOTE_MAX,
    ImportRefused,
    suppressions_import,
)

ADD_PERM = "notifications.add_suppression"
REMOVE_PERM = "notifications.change_suppression"
# A category is a slug, so it can never be "*": the filter's value for "every email" (scope "").
ALL_MAIL = "*"
# Errors listed on the import's report page; the rest are counted.
ERRORS_SHOWN = 500


def _scope_choices() -> list[tuple[str, str]]:
    return [("", "All mail (every email)")] + [(c, c) for c in suppression.categories()]


class ScopeFilter(admin.SimpleListFilter):
    """All mail or one category: the choices are the categories event types have now (read from
    EventType, not by a DISTINCT over the list)."""

    title = "scope"
    parameter_name = "scope"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        choices = [(ALL_MAIL, "all mail")] + [(c, c) for c in suppression.categories()]
        current = self.value()
        if current and current not in dict(choices):
            choices.append((current, current))  # an old category still on the list
        return choices

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if not value:
            return queryset
        return queryset.filter(scope="" if value == ALL_MAIL else value)


class SuppressionAddForm(forms.Form):
    email = forms.CharField(max_length=254, widget=forms.EmailInput(attrs={"size": 40}))
    scope = forms.ChoiceField(
        choices=(), required=False,
        help_text="All mail, or only one category (what recipients unsubscribe from).")
    note = forms.CharField(required=False, max_length=NOTE_MAX,
                           widget=forms.Textarea(attrs={"rows": 2, "cols": 60}))
    reason = forms.CharField(max_length=500, strip=True,
                             help_text="Required: it goes into the audit log.",
                             widget=forms.TextInput(attrs={"size": 60}))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        scope = self.fields["scope"]
        if isinstance(scope, forms.ChoiceField):
            scope.choices = _scope_choices()

    def clean_email(self) -> str:
        try:
            return suppression.normalize(normalize_email(self.cleaned_data["email"].strip()))
        except EmailNotValidError as exc:
            raise forms.ValidationError(f"Not a valid address: {exc}") from exc


class SuppressionImportForm(forms.Form):
    file = forms.FileField(
        help_text=f"CSV, UTF-8, up to {MAX_BYTES // (1024 * 1024)} MB and {MAX_ROWS:,} rows. "
                  "Columns: email[,scope][,note]; a header row is optional (with one, columns "
                  "are found by name). An empty scope or 'all mail' means every email.")
    reason = forms.CharField(max_length=500, strip=True,
                             help_text="Required: it goes into the audit log.",
                             widget=forms.TextInput(attrs={"size": 60}))

    def clean_file(self) -> Any:
        upload = self.cleaned_data["file"]
        if upload.size > MAX_BYTES:
            raise forms.ValidationError(
                f"The file is larger than {MAX_BYTES // (1024 * 1024)} MB: split it.")
        return upload


@admin.register(Suppression)
class SuppressionAdmin(ReasonConfirmMixin, admin.ModelAdmin):
    list_display = ("email", "scope_display", "reason", "active", "source", "created_at",
                    "updated_at")
    list_filter = ("reason", "active", ScopeFilter)
    # Matched by get_search_results (exact or start of the address), not as substrings.
    search_fields = ("email",)
    search_help_text = "An address (exact), or the start of one. Case does not matter."
    ordering = ("-updated_at",)
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = EstimatingPaginator
    list_per_page = 100
    actions = ["remove_suppressions"]
    readonly_fields = ("email", "scope_display", "reason", "active", "source", "note",
                       "message_link", "created_at", "updated_at")
    fields = readonly_fields
    too_many_hint = "narrow the filter (or search) to remove them here."

    # --- permissions: add and remove through services only; never change or delete a row -----

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(ADD_PERM)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the form would write the row itself; removing is the action below

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # rows are history: removing deactivates

    def has_remove_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(REMOVE_PERM)

    def has_import_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(ADD_PERM)

    # --- the list -----------------------------------------------------------------------------

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Any],
                           search_term: str) -> tuple[QuerySet[Any], bool]:
        """Addresses are stored lower-cased: an address is matched exactly, anything else as
        the start of one (both through an index)."""
        term = suppression.normalize(search_term)
        if not term:
            return queryset, False
        if "@" in term:
            return queryset.filter(email=term), False
        return queryset.filter(email__startswith=term), False

    @admin.display(description="scope", ordering="scope")
    def scope_display(self, obj: Suppression) -> str:
        return obj.scope or "all mail"

    @admin.display(description="caused by")
    def message_link(self, obj: Suppression) -> str:
        if obj.message_id is None:
            return "-"
        url = reverse("admin:notifications_message_change", args=[obj.message_id])
        return format_html('<a href="{}">message #{}</a>', url, obj.message_id)

    def changelist_view(self, request: HttpRequest,
                        extra_context: dict[str, Any] | None = None) -> HttpResponse:
        # An action this user may not run is refused outright, not just missing from the menu.
        if request.method == "POST" and request.POST.get("action") == "remove_suppressions" \
                and not self.has_remove_permission(request):
            raise PermissionDenied
        extra_context = {
            **(extra_context or {}),
            "export_url": reverse("admin:notifications_suppression_export"),
            "import_url": reverse("admin:notifications_suppression_import")
            if self.has_import_permission(request) else "",
        }
        return super().changelist_view(request, extra_context)

    # --- remove -------------------------------------------------------------------------------

    @admin.action(permissions=["remove"],
                  description="Remove from the suppression list (mail them again)")
    def remove_suppressions(self, request: HttpRequest,
                            queryset: QuerySet[Suppression]) -> HttpResponse | None:
        if not self.has_remove_permission(request):
            raise PermissionDenied
        active = queryset.filter(active=True)
        what = "these addresses may get mail again; the entries stay in the list, inactive"
        if "confirm" not in request.POST:
            strong = active.filter(reason__in=(SuppressionReason.COMPLAINT,
                                               SuppressionReason.HARD_BOUNCE))[:1001].count()
            if strong:
                what += (f". {strong} of them bounced hard or complained: mailing them again "
                         "harms the sender's reputation")
        answer = self._confirmed(request, queryset, action="remove_suppressions",
                                 title="Remove from the suppression list", acts_on=active,
                                 what=what)
        if not isinstance(answer, str):
            return answer
        ids = list(queryset.values_list("pk", flat=True))
        removed = suppression.unsuppress(pks=ids, user=request.user, reason=answer)
        self.message_user(request, f"Removed {removed} entr{'y' if removed == 1 else 'ies'} "
                          "from the suppression list.", messages.SUCCESS)
        if len(ids) > removed:
            self.message_user(request, f"{len(ids) - removed} selected were not active; left "
                              "as they are.", messages.WARNING)
        return None

    # --- add, import, export ------------------------------------------------------------------

    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        return [
            path("import/", wrap(self.import_view), name="notifications_suppression_import"),
            path("export/", wrap(self.export_view), name="notifications_suppression_export"),
        ] + super().get_urls()

    def _context(self, request: HttpRequest, title: str, **extra: Any) -> dict[str, Any]:
        return {**self.admin_site.each_context(request), "title": title,
                "opts": self.model._meta, **extra}

    def add_view(self, request: HttpRequest, form_url: str = "",
                 extra_context: dict[str, Any] | None = None) -> HttpResponse:
        """One address, through suppression.suppress (audited with the operator's reason)."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = SuppressionAddForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            row, changed = suppression.suppress(
                email=data["email"], reason=SuppressionReason.MANUAL, scope=data["scope"],
                source=f"admin: {request.user.get_username()}"[:200], note=data["note"],
                user=request.user, audit_reason=data["reason"])
            if changed:
                self.message_user(request, f"Suppressed {row}.", messages.SUCCESS)
            else:
                self.message_user(
                    request, f"{row.email} was already suppressed for {row.scope or 'all mail'} "
                    f"({row.get_reason_display().lower()}); left as it is.", messages.WARNING)
            url = reverse("admin:notifications_suppression_changelist")
            # Encoded: an address may hold "+", "&", "#" or "%" ("a+b@" read back as "a b@").
            return HttpResponseRedirect(f"{url}?{urlencode({'q': row.email})}")
        return TemplateResponse(request, "admin/notifications/suppression/add.html",
                                self._context(request, "Add to the suppression list",
                                              form=form))

    def import_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_import_permission(request):
            raise PermissionDenied
        bound = request.method == "POST"
        form = SuppressionImportForm(request.POST if bound else None,
                                     request.FILES if bound else None)
        result = None
        if bound and form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                result = suppressions_import(
                    data=upload.read(MAX_BYTES + 1), filename=upload.name or "upload.csv",
                    user=request.user, reason=form.cleaned_data["reason"])
            except ImportRefused as exc:
                form.add_error("file", str(exc))
            else:
                level = messages.WARNING if result.errors else messages.SUCCESS
                self.message_user(
                    request, f"Imported {result.saved} row(s): {result.changed} added or "
                    f"changed, {result.unchanged} already on the list; {len(result.errors)} "
                    "refused (listed below, not imported).", level)
        return TemplateResponse(request, "admin/notifications/suppression/import.html",
                                self._context(
                                    request, "Import suppressions (CSV)", form=form,
                                    result=result,
                                    errors=result.errors[:ERRORS_SHOWN] if result else [],
                                    more_errors=max(0, len(result.errors) - ERRORS_SHOWN)
                                    if result else 0,
                                    max_rows=MAX_ROWS))

    EXPORT_FIELDS = ("email", "scope", "reason", "active", "source", "note", "message_id",
                     "created_at", "updated_at")

    def export_view(self, request: HttpRequest) -> HttpResponseBase:
        """The changelist's filtered (and searched) rows as CSV, streamed; formula-safe
        (notifications/exports.py). Imports again as it is (columns found by the header)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters as exc:
            return HttpResponseBadRequest(f"Bad filter: {exc}".encode())
        rows = changelist.get_queryset(request).values_list(*self.EXPORT_FIELDS)
        name = f"suppressions-{timezone.now():%Y%m%d-%H%M%S}.csv"
        return csv_response(name, self.EXPORT_FIELDS, rows.iterator(chunk_size=2000))


# --- tracking events --------------------------------------------------------------------------

class EspFilter(admin.SimpleListFilter):
    """The ESPs seen in the latest events (read through the received_at index: a DISTINCT over
    the whole table would scan it)."""

    title = "ESP"
    parameter_name = "esp"
    RECENT = 10_000

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        recent = TrackingEvent.objects.order_by("-received_at").values_list(
            "esp", flat=True)[:self.RECENT]
        names = set(recent)
        if chosen := self.value():
            names.add(chosen)
        return [(n, n) for n in sorted(names)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(esp=self.value()) if self.value() else queryset


class TrackingTypeFilter(admin.SimpleListFilter):
    """Anymail's normalized event types (those of sent mail: inbound ones never come here)."""

    title = "event type"
    parameter_name = "event_type"
    TYPES = tuple(value for name, value in vars(AnymailEventType).items()
                  if name.isupper() and not value.startswith("inbound"))

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(t, t) for t in self.TYPES]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(event_type=self.value()) if self.value() else queryset


class MatchedFilter(admin.SimpleListFilter):
    title = "message"
    parameter_name = "matched"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "matched"), ("no", "unknown (no message matched)")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() in ("yes", "no"):
            return queryset.filter(message__isnull=self.value() == "no")
        return queryset


class CatchUpFilter(admin.SimpleListFilter):
    """Unapplied events still retried by tracking_catch_up, and those it gave up on."""

    title = "catch-up"
    parameter_name = "catch_up"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("waiting", "waiting (retried)"), ("given_up", "given up (never applied)")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "waiting":
            return queryset.filter(catch_up_at__isnull=False)
        if self.value() == "given_up":
            return queryset.filter(applied=False, catch_up_at__isnull=True)
        return queryset


@admin.register(TrackingEvent)
class TrackingEventAdmin(ReadOnlyAdmin):
    list_display = ("received_at", "esp", "event_type", "bounce", "recipient", "message_link",
                    "applied")
    list_filter = (EspFilter, TrackingTypeFilter, MatchedFilter, "applied", CatchUpFilter)
    search_fields = ("recipient",)  # shows the box; get_search_results does the search
    search_help_text = ("A recipient address, the ESP's message id, or our message id "
                        "(a number, or the Message-ID we wrote).")
    ordering = ("-received_at", "-id")
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = EstimatingPaginator
    list_per_page = 100
    fields = ("esp", "event_type", "bounce", "message_link", "notification_id",
              "provider_message_id", "recipient", "occurred_at", "received_at",
              "reject_reason", "description", "mta_response", "lane", "applied",
              "catch_up_tries", "catch_up_at", "dedupe_key", "raw_payload")
    readonly_fields = fields

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Any],
                           search_term: str) -> tuple[QuerySet[Any], bool]:
        """Exact matches only, each through an index (migration 0012): the ESP's message id,
        the recipient, our message id (matched events by their message, unknown ones by the
        notification_id the ESP sent back)."""
        term = search_term.strip()
        if not term:
            return queryset, False
        match = Q(provider_message_id=term) | Q(recipient__iexact=term)
        pk = parse_message_id(term)
        if pk is None and term.isascii() and term.isdigit() and len(term) < 19:
            pk = int(term)
        if pk is not None:
            match |= Q(message_id=pk) | Q(message__isnull=True, notification_id=str(pk))
        return queryset.filter(match), False

    @admin.display(description="message")
    def message_link(self, obj: TrackingEvent) -> str:
        if obj.message_id is None:
            return "unknown"
        url = reverse("admin:notifications_message_change", args=[obj.message_id])
        return format_html('<a href="{}">#{}</a>', url, obj.message_id)

    @admin.display(description="raw payload (as the ESP posted it)")
    def raw_payload(self, obj: TrackingEvent) -> str:
        return format_html('<pre style="margin:0;white-space:pre-wrap">{}</pre>',
                           json.dumps(obj.raw, indent=2, ensure_ascii=False, sort_keys=True))

