"""Operator views: the dashboard, messages with their attempt log, event types, producers.

Admin actions and views call services; nothing here writes a status field itself. Pages stay
fast with millions of rows: no full COUNT (a capped count, else an estimate), no date
hierarchy (it reads every row's date), searches matched exactly on what the term can be.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, time, timedelta
from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseBase,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    JsonResponse,
)
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.dateparse import parse_date
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.safestring import SafeString

from notifications.content import message_render
from notifications.dashboard import chart_svg, snapshot, snapshot_json
from notifications.exports import csv_response
from notifications.lanes import lane_pause, lane_resume
from notifications.models import (
    ApiKey,
    AuditEntry,
    DeliveryAttempt,
    EventType,
    Message,
    Producer,
    Status,
    TrackingEvent,
)
from notifications.producers import api_key_create, api_key_revoke
from notifications.selectors import (
    ESTIMATE_ABOVE,
    capped_count,
    estimated_count,
    message_search,
    table_estimate,
)
from notifications.services import messages_cancel, messages_requeue_audited
from notifications.tracking import EVENT_TIME, HISTORY_SHOWN
from templates_app.exceptions import TemplateRenderError
from templates_app.rendering import RenderedEmail

# The console's front page: the admin index leads to the dashboard first.
admin.site.index_template = "admin/notifications/console_index.html"

# An action on more than this many messages belongs in a tracked operation (the DLQ's
# "requeue everything matching", which runs in a task), not in one web request.
ACTION_LIMIT = 1000


class EstimatingPaginator(Paginator):
    """A paginator that never counts a big table: unfiltered, PostgreSQL's row estimate of the
    table; filtered, an exact count up to ESTIMATE_ABOVE rows and the planner's estimate above.
    Pages past the real end are simply empty. `estimated` says whether the count is exact."""

    estimated = False

    @cached_property
    def count(self) -> int:
        queryset = cast(QuerySet[Any], self.object_list)  # the changelist pages a queryset
        if not queryset.query.where:
            estimate = table_estimate(queryset.model, queryset.db)
            if estimate is not None and estimate > ESTIMATE_ABOVE:
                self.estimated = True
                return estimate
        exact = capped_count(queryset, ESTIMATE_ABOVE)
        if exact is not None:
            return exact
        self.estimated = True
        return max(ESTIMATE_ABOVE + 1, estimated_count(queryset) or 0)


class CreatedRangeFilter(admin.FieldListFilter):
    """A date range (from, to; both days included) on a datetime field, in the site's time zone."""

    template = "admin/notifications/date_range_filter.html"

    def __init__(self, field: Any, request: HttpRequest, params: dict[str, Any], model: Any,
                 model_admin: Any, field_path: str) -> None:
        self.param_from = f"{field_path}__from"
        self.param_to = f"{field_path}__to"
        super().__init__(field, request, params, model, model_admin, field_path)
        self.title = f"{self.title} (range)"

    def expected_parameters(self) -> list[str | None]:
        return [self.param_from, self.param_to]

    def _day(self, name: str) -> Any:
        value = self.used_parameters.get(name)
        if isinstance(value, list):
            value = value[-1] if value else None
        if not value:
            return None
        try:
            day = parse_date(str(value))
        except ValueError:
            day = None
        if day is None:
            raise IncorrectLookupParameters(f"{name}: not a date (YYYY-MM-DD): {value!r}")
        return day

    def _start(self, day: Any) -> datetime:
        return timezone.make_aware(datetime.combine(day, time.min))

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        start, end = self._day(self.param_from), self._day(self.param_to)
        if start is not None:
            queryset = queryset.filter(**{f"{self.field_path}__gte": self._start(start)})
        if end is not None:
            queryset = queryset.filter(
                **{f"{self.field_path}__lt": self._start(end + timedelta(days=1))})
        return queryset

    def choices(self, changelist: ChangeList) -> Iterator[dict[str, Any]]:  # type: ignore[override]
        def one(name: str) -> str:
            value = self.used_parameters.get(name, "")
            return str(value[-1] if isinstance(value, list) and value else value or "")

        keep = [(k, v) for k, v in changelist.get_filters_params().items()
                if k not in (self.param_from, self.param_to)]
        if changelist.query:
            keep.append(("q", changelist.query))
        yield {
            "param_from": self.param_from, "param_to": self.param_to,
            "value_from": one(self.param_from), "value_to": one(self.param_to),
            "keep": [(k, v[-1] if isinstance(v, list) else v) for k, v in keep],
            "clear_url": changelist.get_query_string(remove=[self.param_from, self.param_to]),
        }


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    fields = ("number", "started_at", "duration_ms", "outcome", "error_class", "error_code",
              "error_message", "provider", "provider_message_id", "worker")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class NewestTrackingFormSet(BaseInlineFormSet):
    """The message's newest HISTORY_SHOWN tracking events (as tracking.recent_history picks
    them; the inline's `ordering` then lists them oldest first): a message opened thousands of
    times must not make its page unbounded. The rest are in the tracking events list, linked
    from the page's "Tracking events" field."""

    def get_queryset(self) -> QuerySet[Any]:
        if not hasattr(self, "_queryset") and self.instance.pk is not None:
            newest = TrackingEvent.objects.filter(message_id=self.instance.pk).order_by(
                EVENT_TIME.desc(), "-received_at", "-id").values("pk")[:HISTORY_SHOWN]
            base: QuerySet[Any] = (self.queryset if self.queryset is not None
                                   else TrackingEvent.objects.all())
            self.queryset = base.filter(pk__in=newest)
        return super().get_queryset()


class TrackingEventInline(admin.TabularInline):
    """A message's tracking history on its page: what the provider's webhooks said after it
    accepted the email, the newest HISTORY_SHOWN of it, oldest first (as
    notifications.tracking.recent_history orders it)."""

    model = TrackingEvent
    formset = NewestTrackingFormSet
    extra = 0
    can_delete = False
    verbose_name_plural = (f"Tracking history (the provider's webhooks: the newest "
                           f"{HISTORY_SHOWN}, oldest first)")
    fields = ("occurred_at", "received_at", "esp", "event_type", "bounce", "description",
              "mta_response", "applied", "event_link")
    readonly_fields = fields
    ordering = (EVENT_TIME.asc(), "received_at", "id")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="event")
    def event_link(self, obj: TrackingEvent) -> str:
        url = reverse("admin:notifications_trackingevent_change", args=[obj.pk])
        return format_html('<a href="{}">raw payload</a>', url)


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=500, strip=True, widget=forms.TextInput(
        attrs={"size": 40, "placeholder": "why (recorded in the audit log)"}))


class ResumeForm(forms.Form):
    reason = forms.CharField(max_length=500, strip=True, required=False)


class ReasonConfirmMixin:
    """Django's delete-selected pattern for actions that change things: the first POST shows a
    confirmation page (how many, what happens, a required reason for the audit log); its POST
    (with `confirm`) returns the reason. Shared by the Message and Suppression admins."""

    model: Any
    admin_site: Any
    # Said (after "More than N <items> selected:") when a selection is too big for a request.
    too_many_hint = "Narrow the filter to act here."

    def _confirmed(self, request: HttpRequest, queryset: QuerySet[Any], *, action: str,
                   title: str, acts_on: QuerySet[Any], what: str) -> str | HttpResponse | None:
        """The reason once confirmed; else the confirmation page; None when the selection is
        too big for a request (a message says where to go)."""
        total = capped_count(queryset, ACTION_LIMIT)
        if total is None:
            self.message_user(  # type: ignore[attr-defined]
                request, f"More than {ACTION_LIMIT:,} {self.model._meta.verbose_name_plural} "
                f"selected: {self.too_many_hint}", messages.ERROR)
            return None
        form = ReasonForm(request.POST if "confirm" in request.POST else None)
        if form.is_valid():
            return str(form.cleaned_data["reason"])
        eligible = acts_on.count() if total else 0
        context = {
            **self.admin_site.each_context(request),
            "title": title, "opts": self.model._meta, "action": action, "form": form,
            "total": total, "eligible": eligible, "skipped": total - eligible, "what": what,
            "selected": request.POST.getlist(ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across", "0"),
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/notifications/message/confirm_action.html",
                                context)


@admin.register(Message)
class MessageAdmin(ReasonConfirmMixin, admin.ModelAdmin):
    list_display = ("id", "event_type", "to_email", "lane", "priority", "status", "attempts",
                    "next_attempt_at", "created_at")
    list_filter = ("status", "lane", "event_type", "producer",
                   ("created_at", CreatedRangeFilter))
    # Matched by message_search (get_search_results), not as substrings.
    search_fields = ("to_email",)
    search_help_text = ("An id, a Message-ID (<n123.abc@domain>), an idempotency key, or a "
                        "recipient address (or its start).")
    list_select_related = ("event_type",)
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER  # facet counts would count the table
    paginator = EstimatingPaginator
    list_per_page = 50
    inlines = [DeliveryAttemptInline, TrackingEventInline]
    actions = ["requeue_messages", "cancel_messages"]
    too_many_hint = ("that is a job for a tracked operation (Dead letters: requeue or discard "
                     "everything matching a filter), which runs in a task. Narrow the filter to "
                     "act here.")
    readonly_fields = [f.name for f in Message._meta.fields] + [
        "rendered_subject", "preview", "event_data", "message_id_header", "suppression",
        "tracking_events"]
    fieldsets = (
        (None, {"fields": ("id", "event_type", "producer", "idempotency_key", "status",
                           "dead_reason", "last_error", "message_id_header")}),
        ("Recipient", {"fields": ("to_email", "to_name", "locale", "event_data")}),
        ("Deliverability (what the provider reported; the suppression that stopped it)",
         {"fields": ("bounce", "suppression", "tracking_events")}),
        ("Email (rendered now from the pinned version, as the drain renders it)",
         {"fields": ("template_version", "rendered_subject", "preview")}),
        ("Delivery", {"fields": ("lane", "priority", "attempts", "max_attempts",
                                 "next_attempt_at", "expires_at", "lease_until", "lease_token",
                                 "provider", "provider_message_id", "sent_at", "created_at",
                                 "updated_at")}),
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # messages come from notify(), so they are validated

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None  # the list is browsable; a message is read-only

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the queue of record keeps its history; cancel instead

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("notifications.cancel_message")

    def has_requeue_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("dlq.requeue_deadletter")

    def has_pause_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("notifications.pause_lane")

    def action_checkbox(self, obj: Message) -> SafeString:
        """Django's checkbox, written directly: rendering a widget template per row was a
        third of the changelist's time."""
        return format_html('<input type="checkbox" name="{}" value="{}" class="action-select" '
                           'aria-label="Select this object for an action - {}">',
                           ACTION_CHECKBOX_NAME, obj.pk, str(obj))

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Any],
                           search_term: str) -> tuple[QuerySet[Any], bool]:
        return message_search(queryset, search_term), False

    # --- the detail page --------------------------------------------------------------------

    def _rendered(self, obj: Message) -> RenderedEmail | str:
        # Rendered once per page (the fields below share it).
        cached = getattr(obj, "_console_rendered", None)
        if cached is None:
            try:
                cached = message_render(obj)
            except TemplateRenderError as exc:
                cached = f"Does not render: {exc}"
            obj._console_rendered = cached  # type: ignore[attr-defined]
        return cached

    @admin.display(description="Subject")
    def rendered_subject(self, obj: Message) -> str:
        email = self._rendered(obj)
        return email if isinstance(email, str) else email.subject

    @admin.display(description="Preview")
    def preview(self, obj: Message) -> str:
        """The HTML part in a sandboxed iframe (no scripts, no same origin: the email cannot
        reach the admin), the text part beside it."""
        email = self._rendered(obj)
        if isinstance(email, str):
            return email
        return format_html(
            '<div class="email-preview" style="display:flex;gap:1em;flex-wrap:wrap">'
            '<iframe sandbox="" referrerpolicy="no-referrer" title="HTML part" srcdoc="{}" '
            'style="flex:1 1 420px;min-height:420px;border:1px solid #ccc;background:#fff">'
            "</iframe>"
            '<pre class="text-part" style="flex:1 1 320px;white-space:pre-wrap;margin:0">{}</pre>'
            "</div>", email.html, email.text)

    @admin.display(description="Event data")
    def event_data(self, obj: Message) -> str:
        return format_html('<pre style="margin:0">{}</pre>',
                           json.dumps(obj.data, indent=2, ensure_ascii=False, sort_keys=True))

    @admin.display(description="Suppressed by")
    def suppression(self, obj: Message) -> str:
        """The suppression-list entry that stopped it, linked (its reason and scope)."""
        if obj.suppressed_by_id is None:
            return "-" if obj.status != Status.SUPPRESSED else \
                "- (the entry is gone; see the last error)"
        row = obj.suppressed_by
        if row is None:
            return "-"
        url = reverse("admin:notifications_suppression_change", args=[row.pk])
        state = "" if row.active else " (removed since)"
        return format_html('<a href="{}">{}: {} ({})</a>{}', url, row.email,
                           row.get_reason_display(), row.scope or "all mail", state)

    @admin.display(description="Tracking events")
    def tracking_events(self, obj: Message) -> str:
        """How many the providers reported (one COUNT through the message's index), and where
        all of them are when the history below shows only the newest."""
        total = TrackingEvent.objects.filter(message_id=obj.pk).count()
        if not total:
            return "none"
        url = (reverse("admin:notifications_trackingevent_changelist") + "?"
               + urlencode({"message__id__exact": obj.pk}))
        if total <= HISTORY_SHOWN:
            return format_html('{} (listed below; also in <a href="{}">the tracking events '
                               "list</a>)", total, url)
        return format_html('{}: the newest {} are listed below; <a href="{}">all {} in the '
                           "tracking events list</a>", total, HISTORY_SHOWN, url, total)

    @admin.display(description="Message-ID")
    def message_id_header(self, obj: Message) -> str:
        from notifications.delivery import message_id_for

        return message_id_for(obj.pk)

    # --- actions ----------------------------------------------------------------------------

    @admin.action(permissions=["requeue"],
                  description="Requeue selected dead messages (fresh attempts)")
    def requeue_messages(self, request: HttpRequest,
                         queryset: QuerySet[Message]) -> HttpResponse | None:
        if not self.has_requeue_permission(request):
            raise PermissionDenied
        answer = self._confirmed(
            request, queryset, action="requeue_messages", title="Requeue messages",
            acts_on=queryset.filter(status=Status.DEAD),
            what="dead messages go back to pending with a fresh attempt budget and expiry")
        if not isinstance(answer, str):
            return answer
        ids = list(queryset.values_list("pk", flat=True))
        moved = messages_requeue_audited(pks=ids, user=request.user, reason=answer)
        self.message_user(request, f"Requeued {moved} message(s).", messages.SUCCESS)
        if len(ids) > moved:
            self.message_user(request, f"{len(ids) - moved} message(s) were not dead letters; "
                              "left as they are.", messages.WARNING)
        return None

    @admin.action(permissions=["cancel"],
                  description="Cancel selected messages (only those not sent yet)")
    def cancel_messages(self, request: HttpRequest,
                        queryset: QuerySet[Message]) -> HttpResponse | None:
        if not self.has_cancel_permission(request):
            raise PermissionDenied
        answer = self._confirmed(
            request, queryset, action="cancel_messages", title="Cancel messages",
            acts_on=queryset.filter(status__in=(Status.PENDING, Status.RETRY)),
            what="pending and retrying messages are cancelled: never sent")
        if not isinstance(answer, str):
            return answer
        ids = list(queryset.values_list("pk", flat=True))
        cancelled = messages_cancel(pks=ids, user=request.user, reason=answer)
        self.message_user(request, f"Cancelled {cancelled} message(s).", messages.SUCCESS)
        if len(ids) > cancelled:
            self.message_user(
                request, f"{len(ids) - cancelled} message(s) were already sent, dead, being "
                "sent or cancelled; left as is.", messages.WARNING)
        return None

    # --- custom pages -----------------------------------------------------------------------

    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        custom = [
            path("dashboard/", wrap(self.dashboard_view), name="notifications_message_dashboard"),
            path("dashboard/data/", wrap(self.dashboard_data_view),
                 name="notifications_message_dashboard_data"),
            path("dashboard/<str:lane>/pause/", wrap(self.lane_pause_view),
                 name="notifications_message_lane_pause"),
            path("dashboard/<str:lane>/resume/", wrap(self.lane_resume_view),
                 name="notifications_message_lane_resume"),
            # The old queue stats page is the dashboard now.
            path("stats/", wrap(self.dashboard_view), name="notifications_message_stats"),
            path("export/", wrap(self.export_view), name="notifications_message_export"),
        ]
        return custom + super().get_urls()

    def _require_view(self, request: HttpRequest) -> None:
        if not self.has_view_permission(request):
            raise PermissionDenied

    def dashboard_view(self, request: HttpRequest) -> TemplateResponse:
        self._require_view(request)
        snap = snapshot()
        context = {
            **self.admin_site.each_context(request),
            "title": "Dashboard",
            "opts": self.model._meta,
            "snap": snap,
            "lanes": [(lane, chart_svg(lane)) for lane in snap.lanes],
            "can_pause": self.has_pause_permission(request),
            "pause_form": ReasonForm(),
            "refresh_seconds": 5,
        }
        return TemplateResponse(request, "admin/notifications/dashboard.html", context)

    def dashboard_data_view(self, request: HttpRequest) -> JsonResponse:
        self._require_view(request)
        return JsonResponse(snapshot_json(snapshot()))

    def _lane_change(self, request: HttpRequest, lane: str, *, pause: bool) -> HttpResponse:
        # Permission first: a viewer gets 403 whatever the method.
        if not self.has_pause_permission(request):
            raise PermissionDenied
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        back = HttpResponseRedirect(reverse("admin:notifications_message_dashboard"))
        form = (ReasonForm if pause else ResumeForm)(request.POST)
        if not form.is_valid():
            self.message_user(request, "Give a reason (up to 500 characters) to pause a lane: "
                              "it goes in the audit log.", messages.ERROR)
            return back
        change = lane_pause if pause else lane_resume
        try:
            changed = change(lane=lane, user=request.user, reason=form.cleaned_data["reason"])
        except ValueError as exc:  # an unknown lane
            self.message_user(request, str(exc), messages.ERROR)
            return back
        verb = "Paused" if pause else "Resumed"
        if changed:
            self.message_user(request, f"{verb} lane {lane}.", messages.SUCCESS)
        else:
            self.message_user(request, f"Lane {lane} was already "
                              f"{'paused' if pause else 'running'}.", messages.WARNING)
        return back

    def lane_pause_view(self, request: HttpRequest, lane: str) -> HttpResponse:
        return self._lane_change(request, lane, pause=True)

    def lane_resume_view(self, request: HttpRequest, lane: str) -> HttpResponse:
        return self._lane_change(request, lane, pause=False)

    EXPORT_FIELDS = ("id", "status", "lane", "event_type__key", "producer__name", "to_email",
                     "idempotency_key", "attempts", "dead_reason", "last_error",
                     "provider", "provider_message_id", "created_at", "next_attempt_at",
                     "sent_at")

    def export_view(self, request: HttpRequest) -> HttpResponseBase:
        """The changelist's filtered (and searched) rows as CSV, all of them, streamed."""
        self._require_view(request)
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters as exc:
            return HttpResponseBadRequest(f"Bad filter: {exc}".encode())
        rows = changelist.get_queryset(request).values_list(*self.EXPORT_FIELDS)
        name = f"{self.model._meta.model_name}s-{timezone.now():%Y%m%d-%H%M%S}.csv"
        return csv_response(name, self.EXPORT_FIELDS, rows.iterator(chunk_size=2000))

    def changelist_view(self, request: HttpRequest,
                        extra_context: dict[str, Any] | None = None) -> HttpResponse:
        extra_context = {
            **(extra_context or {}),
            "dashboard_url": reverse("admin:notifications_message_dashboard"),
            "export_url": reverse("admin:notifications_message_export"),
        }
        return super().changelist_view(request, extra_context)


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


class ReadOnlyAdmin(admin.ModelAdmin):
    """A record nobody adds, changes or deletes in the admin: services write it."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    """Append-only: nobody adds, changes or deletes an entry (notifications/audit.py writes)."""

    list_display = ("at", "username", "action", "target", "count", "reason")
    list_filter = ("action", "username")
    search_fields = ("target", "reason", "username")
    date_hierarchy = "at"
    readonly_fields = ("at", "user", "username", "action", "target", "filter", "count", "reason")


# The suppression list and the tracking events (they use the helpers above, so imported last).
from notifications import admin_deliverability  # noqa: E402, F401
