"""Admin for templates: content is edited by adding versions, never by changing one.

- The add page is the editor: prefilled from the active version when opened from a template's
  "Edit (new version)" link, with a draft preview (sandboxed iframe, text part beside it) that a
  "Preview" button refreshes by POSTing the unsaved sources to `draft-preview/`. It saves through
  `template_version_create` (audited; compile errors show on the field, with the line).
- A version's page is read-only, with links to preview it, diff it, test send it and activate it.
- Activating (or rolling back to) a version shows its blast radius first: the queued messages
  pinned to the version being replaced, which keep rendering from it.
- Viewers see everything; adding, activating and test sends need their permissions (operators).
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import InlineModelAdmin
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_POST

from notifications.models import EventType
from templates_app.exceptions import NoActiveTemplateVersion, TemplateRenderError
from templates_app.forms import (
    CONTENT_FIELDS,
    ActivateForm,
    DiffForm,
    DraftPreviewForm,
    PreviewDataForm,
    TemplateVersionAddForm,
    TestSendForm,
)
from templates_app.models import Template, TemplateVersion
from templates_app.rendering import DraftPreview, RenderedEmail, render_draft, render_version
from templates_app.selectors import (
    sample_data_for,
    template_event_types,
    template_version_active,
    template_version_blast_radius,
    template_version_previous,
    template_versions_diff,
)

if TYPE_CHECKING:
    from django.contrib.admin.options import _FieldGroups
from templates_app.services import (
    template_version_activate,
    template_version_create,
    template_version_test_send,
)

logger = logging.getLogger(__name__)

ADD = "templates_app.add_templateversion"
ACTIVATE = "templates_app.activate_templateversion"
TEST_SEND = "templates_app.test_send_templateversion"


def _new_version_url(*, template_id: int, locale: str | None = None) -> str:
    params: dict[str, Any] = {"template": template_id}
    if locale:
        params["locale"] = locale
    return f"{reverse('admin:templates_app_templateversion_add')}?{urlencode(params)}"


def _url(name: str, version: TemplateVersion) -> str:
    return reverse(f"admin:templates_app_templateversion_{name}", args=[version.pk])


def _preview_url(version: TemplateVersion) -> str:
    return _url("preview", version)


def _diff_url(*, old: TemplateVersion, new: TemplateVersion) -> str:
    query = urlencode({"template": new.template_id, "old": old.pk, "new": new.pk})
    return f"{reverse('admin:templates_app_templateversion_diff')}?{query}"


class TemplateVersionInline(admin.TabularInline):
    """For viewers: links that only read."""

    model = TemplateVersion
    fields = ("locale", "subject", "is_active", "created_at", "created_by", "links")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="")
    def links(self, version: TemplateVersion) -> str:
        return format_html('<a href="{}">Preview</a>', _preview_url(version))


class TemplateVersionEditorInline(TemplateVersionInline):
    """For operators: also the editor and the activation (rollback) confirmation."""

    @admin.display(description="")
    def links(self, version: TemplateVersion) -> str:
        activate = "" if version.is_active else format_html(
            ' · <a href="{}">Activate…</a>', _url("activate", version))
        return format_html(
            '<a href="{}">Edit (new version)</a> · <a href="{}">Preview</a>{}',
            _new_version_url(template_id=version.template_id, locale=version.locale),
            _preview_url(version),
            activate,
        )


@admin.register(Template)
class TemplateAdmin(admin.ModelAdmin):
    list_display = ("key", "description", "active_locales", "created_at")
    search_fields = ("key", "description")
    change_form_template = "admin/templates_app/template/change_form.html"

    def get_inlines(self, request: HttpRequest,
                    obj: Any = None) -> list[type[InlineModelAdmin[Any, Any]]]:
        if obj is None:
            return []  # a new template has no versions yet
        return [TemplateVersionEditorInline if request.user.has_perm(ADD)
                else TemplateVersionInline]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> _FieldGroups:
        fields: list[str | list[str] | tuple[str, ...] | tuple[()]] = ["key", "description"]
        if obj is not None:
            fields.append("created_at")
            if request.user.has_perm(ADD):
                fields.append("new_version")
        return fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # Event types refer to a template by key: renaming it would break them.
        return ("key", "created_at", "new_version") if obj else ()

    def get_queryset(self, request: HttpRequest) -> QuerySet[Template]:
        return super().get_queryset(request).prefetch_related("versions")

    @admin.display(description="Active locales")
    def active_locales(self, template: Template) -> str:
        return ", ".join(sorted(v.locale for v in template.versions.all() if v.is_active))

    @admin.display(description="Versions")
    def new_version(self, template: Template) -> str:
        active = [v for v in template.versions.all() if v.is_active]
        links = format_html_join(
            " · ",
            '<a href="{}">Edit [{}] (new version)</a>',
            (
                (_new_version_url(template_id=template.pk, locale=v.locale), v.locale)
                for v in sorted(active, key=lambda v: v.locale)
            ),
        )
        return format_html(
            '{} <a href="{}">Add a version for another locale</a>',
            format_html("{} ·", links) if active else "",
            _new_version_url(template_id=template.pk),
        )

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:
        template = self.get_object(request, unquote(object_id))
        tools: list[tuple[str, str]] = []
        if template is not None:
            tools.append((f"{reverse('admin:templates_app_templateversion_diff')}?"
                          f"{urlencode({'template': template.pk})}", "Diff versions"))
            if request.user.has_perm(ACTIVATE):
                for active in sorted((v for v in template.versions.all() if v.is_active),
                                     key=lambda v: v.locale):
                    previous = template_version_previous(version=active)
                    if previous is not None:
                        tools.append((_url("activate", previous),
                                      f"Roll back [{active.locale}] to v{previous.pk}…"))
        return super().change_view(
            request, object_id, form_url, {**(extra_context or {}), "version_tools": tools})


@admin.register(TemplateVersion)
class TemplateVersionAdmin(admin.ModelAdmin):
    form = TemplateVersionAddForm
    add_form_template = "admin/templates_app/templateversion/editor.html"
    change_form_template = "admin/templates_app/templateversion/change_form.html"
    list_display = (
        "__str__",
        "template",
        "locale",
        "subject",
        "is_active",
        "created_at",
        "created_by",
        "preview_link",
    )
    list_filter = ("is_active", "locale", "template")
    list_select_related = ("template", "created_by")
    search_fields = ("template__key", "subject")
    actions = ["activate_versions", "diff_versions"]

    # --- permissions ---------------------------------------------------------------------------
    # Immutability: add only, never change or delete. With no change permission Django shows a
    # version's page read-only and refuses POSTs to it.
    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # messages pin the version they were rendered from

    def has_activate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(ACTIVATE)

    def has_test_send_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(TEST_SEND)

    def _require(self, request: HttpRequest, allowed: bool) -> None:
        if not allowed:
            raise PermissionDenied

    def _version(self, request: HttpRequest, object_id: str) -> TemplateVersion:
        if not str(object_id).isdigit():
            raise Http404("No such template version.")
        version = self.get_object(request, unquote(object_id))
        if version is None:
            raise Http404("No such template version.")
        return version

    def _context(self, request: HttpRequest, **extra: Any) -> dict[str, Any]:
        return {**self.admin_site.each_context(request), "opts": self.opts, **extra}

    # --- the editor (add page) -----------------------------------------------------------------
    def get_fields(self, request: HttpRequest, obj: Any = None) -> _FieldGroups:
        if obj is None:
            return ["template", "locale", *CONTENT_FIELDS, "activate"]
        return [
            "template",
            "locale",
            *CONTENT_FIELDS,
            "is_active",
            "created_at",
            "created_by",
            "preview_link",
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return ("is_active", "created_at", "created_by", "preview_link") if obj else ()

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        """Prefill from the version now active for ?template=<id>&locale=<locale>."""
        initial = super().get_changeform_initial_data(request)
        template_id, locale = request.GET.get("template", ""), request.GET.get("locale", "")
        if not (template_id.isdigit() and locale):
            return initial
        template = Template.objects.filter(pk=template_id).first()
        if template is None:
            return initial
        try:
            # The fallback chain too: a new "fr" version starts from the default language's text.
            active = template_version_active(template=template, locale=locale)
        except NoActiveTemplateVersion:
            return initial
        initial.update({field: getattr(active, field) for field in CONTENT_FIELDS})
        return initial

    def render_change_form(self, request: HttpRequest, context: dict[str, Any], add: bool = False,
                           change: bool = False, form_url: str = "", obj: Any = None
                           ) -> HttpResponse:
        if add:
            context.update(self._editor_context(request, context["adminform"].form))
        elif obj is not None:
            context["version_tools"] = self._version_tools(request, obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def _editor_context(self, request: HttpRequest, form: forms.Form) -> dict[str, Any]:
        """The draft preview shown when the editor opens (and after a failed save): the form's
        sources rendered with the sample data of the first event type using the template."""
        values = form.data if form.is_bound else form.initial
        template_id = str(values.get("template") or "")
        event_types = template_event_types(
            template_id=int(template_id) if template_id.isdigit() else None)
        event_type = event_types[0] if event_types else None
        preview = render_draft(
            **{field: str(values.get(field) or "") for field in CONTENT_FIELDS},
            context=sample_data_for(event_type=event_type),
        )
        return {
            "draft_form": DraftPreviewForm(initial={"event_type": event_type}),
            "draft_preview": preview,
            "draft_preview_url": reverse("admin:templates_app_templateversion_draft_preview"),
        }

    def save_model(self, request: HttpRequest, obj: Any, form: forms.Form, change: bool) -> None:
        if change:
            raise PermissionDenied("Template versions are immutable; add a new version.")
        data = form.cleaned_data
        created = template_version_create(
            template=data["template"],
            locale=data["locale"],
            subject=data["subject"],
            html_body=data["html_body"],
            text_body=data["text_body"],
            user=request.user,
            activate=data["activate"],
        )
        # The admin goes on to log and redirect with `obj`: make it the row the service wrote.
        obj.pk = created.pk
        obj.is_active = created.is_active
        obj.created_at = created.created_at
        obj.created_by = created.created_by
        obj._state.adding = False

    # --- the changelist's actions --------------------------------------------------------------
    @admin.action(description="Activate this version (shows the blast radius first)",
                  permissions=["activate"])
    def activate_versions(self, request: HttpRequest, queryset: QuerySet[TemplateVersion]
                          ) -> HttpResponse | None:
        versions = list(queryset[:2])
        if len(versions) != 1:
            self.message_user(
                request, "Select exactly one version to activate: its confirmation page shows"
                " the queued messages it affects first.", messages.ERROR)
            return None
        return HttpResponseRedirect(_url("activate", versions[0]))

    @admin.action(description="Diff the two selected versions", permissions=["view"])
    def diff_versions(self, request: HttpRequest, queryset: QuerySet[TemplateVersion]
                      ) -> HttpResponse | None:
        versions = sorted(queryset[:3], key=lambda v: v.pk)
        if len(versions) != 2 or versions[0].template_id != versions[1].template_id:
            self.message_user(request, "Select two versions of the same template to diff.",
                              messages.ERROR)
            return None
        return HttpResponseRedirect(_diff_url(old=versions[0], new=versions[1]))

    # --- links ---------------------------------------------------------------------------------
    @admin.display(description="Preview")
    def preview_link(self, version: TemplateVersion) -> str:
        return format_html('<a href="{}">Preview</a>', _preview_url(version))

    def _version_tools(self, request: HttpRequest, version: TemplateVersion
                       ) -> list[tuple[str, str]]:
        """The version page's buttons; actions only for those allowed to take them."""
        tools = [(_preview_url(version), "Preview")]
        base = template_version_previous(version=version)
        if base is None and not version.is_active:
            base = TemplateVersion.objects.filter(
                template_id=version.template_id, locale=version.locale, is_active=True).first()
        if base is not None:
            tools.append((_diff_url(old=base, new=version), f"Diff with v{base.pk}"))
        if self.has_test_send_permission(request):
            tools.append((_url("test_send", version), "Test send…"))
        if self.has_activate_permission(request) and not version.is_active:
            tools.append((_url("activate", version), "Activate…"))
        if self.has_add_permission(request):
            tools.append((_new_version_url(template_id=version.template_id,
                                           locale=version.locale), "Edit (new version)"))
        return tools

    def get_urls(self) -> list[URLPattern]:
        def view(func: Any, name: str, route: str) -> URLPattern:
            return path(route, self.admin_site.admin_view(func),
                        name=f"templates_app_templateversion_{name}")

        return [
            view(self.draft_preview_view, "draft_preview", "draft-preview/"),
            view(self.diff_view, "diff", "diff/"),
            view(self.preview_view, "preview", "<path:object_id>/preview/"),
            view(self.activate_view, "activate", "<path:object_id>/activate/"),
            view(self.test_send_view, "test_send", "<path:object_id>/test-send/"),
            *super().get_urls(),
        ]

    # --- previews ------------------------------------------------------------------------------
    def preview_view(self, request: HttpRequest, object_id: str) -> TemplateResponse:
        """Render a version with an event type's sample data (`?event_type=<id>`, by default
        the first event type using the template) or with `?data=<JSON object>`."""
        version = self._version(request, object_id)
        self._require(request, self.has_view_permission(request, version))
        event_types = template_event_types(template_id=version.template_id)
        form = PreviewDataForm(
            request.GET if "event_type" in request.GET else None,
            initial={"event_type": event_types[0] if event_types else None})
        raw = request.GET.get("data", "").strip()
        error = ""
        rendered: RenderedEmail | None = None
        data: Any = None
        if raw:
            try:
                data = json.loads(raw)
            except json.JSONDecodeError as exc:
                error = f"Sample data is not valid JSON: {exc}"
            else:
                if not isinstance(data, dict):
                    error = 'Sample data must be a JSON object, like {"name": "Ada"}.'
        elif form.is_bound and not form.is_valid():
            error = "Pick an event type from the list."
        else:
            event_type = form.cleaned_data["event_type"] if form.is_bound else (
                event_types[0] if event_types else None)
            data = sample_data_for(event_type=event_type)
        if not error:
            try:
                rendered = render_version(version, data)
            except TemplateRenderError as exc:
                error = str(exc)
        context = self._context(
            request, original=version, title=f"Preview of {version}", data=raw or "",
            form=form, error=error, rendered=rendered,
            version_tools=self._version_tools(request, version),
        )
        return TemplateResponse(
            request, "admin/templates_app/templateversion/preview.html", context)

    def draft_preview_view(self, request: HttpRequest) -> HttpResponse:
        """POST the editor's unsaved sources; answer the rendered draft as JSON. Saves nothing."""
        return require_POST(self._draft_preview)(request)

    def _draft_preview(self, request: HttpRequest) -> JsonResponse:
        self._require(request, self.has_add_permission(request))
        form = DraftPreviewForm(request.POST)
        if not form.is_valid():
            return JsonResponse({"errors": [f"{name}: {' '.join(str(e) for e in errors)}"
                                            for name, errors in form.errors.items()]},
                                status=400)
        event_type: EventType | None = form.cleaned_data["event_type"]
        preview: DraftPreview = render_draft(
            **{field: form.cleaned_data[field] for field in CONTENT_FIELDS},
            context=sample_data_for(event_type=event_type),
        )
        rendered = preview.rendered
        return JsonResponse({
            "errors": preview.errors,
            "subject": rendered.subject if rendered else "",
            "html": rendered.html if rendered else "",
            "text": rendered.text if rendered else "",
        })

    # --- diff ----------------------------------------------------------------------------------
    def diff_view(self, request: HttpRequest) -> TemplateResponse:
        self._require(request, self.has_view_permission(request))
        template_id = request.GET.get("template", "")
        template = (Template.objects.filter(pk=template_id).first()
                    if template_id.isdigit() else None)
        form = DiffForm(request.GET if {"old", "new"} & set(request.GET) else None,
                        template_id=template.pk if template else None)
        diffs = []
        if form.is_bound and form.is_valid():
            old, new = form.cleaned_data["old"], form.cleaned_data["new"]
            template = new.template
            diffs = template_versions_diff(old=old, new=new)
        title = f"Diff of {template.key} versions" if template else "Diff template versions"
        context = self._context(request, title=title, form=form, diffs=diffs, template=template)
        return TemplateResponse(request, "admin/templates_app/templateversion/diff.html", context)

    # --- activation (and rollback) -------------------------------------------------------------
    def activate_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """GET: the blast radius and a confirmation form. POST: activate, audited."""
        version = self._version(request, object_id)
        self._require(request, self.has_activate_permission(request))
        form = ActivateForm(request.POST if request.method == "POST" else None)
        radius = template_version_blast_radius(version=version)
        if request.method == "POST" and form.is_valid() and not radius.is_noop:
            template_version_activate(
                version=version, user=request.user, reason=form.cleaned_data["reason"])
            self.message_user(request, f"Activated {version}. Messages already queued keep the"
                              " version they were pinned to.", messages.SUCCESS)
            return HttpResponseRedirect(
                reverse("admin:templates_app_template_change", args=[version.template_id]))
        rollback = radius.replaced is not None and radius.replaced.pk > version.pk
        context = self._context(
            request, original=version, radius=radius, form=form, rollback=rollback,
            title=f"{'Roll back to' if rollback else 'Activate'} {version}?",
            diff_url=_diff_url(old=radius.replaced, new=version)
            if radius.replaced and not radius.is_noop else "",
        )
        return TemplateResponse(
            request, "admin/templates_app/templateversion/activate_confirm.html", context)

    # --- test send -----------------------------------------------------------------------------
    def test_send_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """GET: the form. POST: check the address and that the version renders, then enqueue."""
        version = self._version(request, object_id)
        self._require(request, self.has_test_send_permission(request))
        event_types = template_event_types(template_id=version.template_id)
        initial = {"event_type": event_types[0] if event_types else None,
                   "to_email": getattr(request.user, "email", "")}
        form = TestSendForm(request.POST if request.method == "POST" else None, initial=initial)
        if request.method == "POST" and form.is_valid():
            to_email, event_type = form.cleaned_data["to_email"], form.cleaned_data["event_type"]
            try:
                render_version(version, sample_data_for(event_type=event_type, to_email=to_email))
            except TemplateRenderError as exc:
                form.add_error("event_type", f"The version does not render with this sample"
                                             f" data: {exc}")
            else:
                try:
                    template_version_test_send(version=version, to_email=to_email,
                                               event_type=event_type, user=request.user)
                except Exception as exc:  # the task queue is down: say so, do not 500
                    logger.exception("could not enqueue a test send of %s", version)
                    form.add_error(None, f"The test send could not be queued ({exc}); the audit"
                                         " log records the attempt. Try again shortly.")
                else:
                    self.message_user(request, f"Test email of {version} queued for"
                                      f" {to_email}.", messages.SUCCESS)
                    return HttpResponseRedirect(_url("change", version))
        context = self._context(request, original=version, form=form,
                                title=f"Test send {version}")
        return TemplateResponse(
            request, "admin/templates_app/templateversion/test_send.html", context)
