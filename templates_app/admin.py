"""Admin for templates: content is edited by adding versions, never by changing one.

A version's change page is read-only. Its add page is prefilled from the active version when
opened from a template's "Edit (new version)" link, saves through `template_version_create`
(compile errors show on the field, with the line), and versions can be previewed with sample
data and re-activated (rollback) with an action.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join

from templates_app.exceptions import NoActiveTemplateVersion, TemplateRenderError
from templates_app.models import Template, TemplateVersion
from templates_app.rendering import RenderedEmail, compile_errors, render_version
from templates_app.selectors import template_version_active
from templates_app.services import template_version_activate, template_version_create

CONTENT_FIELDS = ("subject", "html_body", "text_body")


def _new_version_url(*, template_id: int, locale: str | None = None) -> str:
    params: dict[str, Any] = {"template": template_id}
    if locale:
        params["locale"] = locale
    return f"{reverse('admin:templates_app_templateversion_add')}?{urlencode(params)}"


def _preview_url(version: TemplateVersion) -> str:
    return reverse("admin:templates_app_templateversion_preview", args=[version.pk])


class TemplateVersionInline(admin.TabularInline):
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
        return format_html(
            '<a href="{}">Edit (new version)</a> · <a href="{}">Preview</a>',
            _new_version_url(template_id=version.template_id, locale=version.locale),
            _preview_url(version),
        )


@admin.register(Template)
class TemplateAdmin(admin.ModelAdmin):
    list_display = ("key", "description", "active_locales", "created_at")
    search_fields = ("key", "description")

    def get_inlines(self, request: HttpRequest, obj: Any = None) -> list[type[admin.TabularInline]]:
        return [TemplateVersionInline] if obj else []  # a new template has no versions yet

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


class TemplateVersionAddForm(forms.ModelForm):
    activate = forms.BooleanField(
        initial=True,
        required=False,
        help_text="Make this the active version for its locale (the current one is kept).",
    )

    class Meta:
        model = TemplateVersion
        fields = ("template", "locale", *CONTENT_FIELDS)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        sources = {field: cleaned.get(field) or "" for field in CONTENT_FIELDS}
        for error in compile_errors(**sources):
            if error.field not in self.errors:
                self.add_error(error.field, f"Line {error.line}: {error.reason}")
        return cleaned


@admin.register(TemplateVersion)
class TemplateVersionAdmin(admin.ModelAdmin):
    form = TemplateVersionAddForm
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
    actions = ["activate_versions"]

    # --- immutability: add only, never change or delete ----------------------------------------
    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # With no change permission on an object, Django shows its page read-only and refuses
        # POSTs. Kept for the changelist (obj=None) so the activate action is offered.
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # messages pin the version they were rendered from

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
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
            created_by=request.user,
            activate=data["activate"],
        )
        # The admin goes on to log and redirect with `obj`: make it the row the service wrote.
        obj.pk = created.pk
        obj.is_active = created.is_active
        obj.created_at = created.created_at
        obj.created_by = created.created_by
        obj._state.adding = False

    # --- rollback ------------------------------------------------------------------------------
    @admin.action(description="Activate this version", permissions=["change"])
    def activate_versions(self, request: HttpRequest, queryset: QuerySet[TemplateVersion]) -> None:
        versions = list(queryset.select_related("template"))
        slots = [(v.template_id, v.locale) for v in versions]
        if len(set(slots)) != len(slots):
            self.message_user(
                request,
                "Select at most one version per template and locale: only one can be active.",
                messages.ERROR,
            )
            return
        for version in versions:
            template_version_activate(version=version)
        self.message_user(
            request, f"Activated: {', '.join(str(v) for v in versions)}.", messages.SUCCESS
        )

    # --- preview -------------------------------------------------------------------------------
    @admin.display(description="Preview")
    def preview_link(self, version: TemplateVersion) -> str:
        return format_html('<a href="{}">Preview</a>', _preview_url(version))

    def get_urls(self) -> list[URLPattern]:
        preview = path(
            "<path:object_id>/preview/",
            self.admin_site.admin_view(self.preview_view),
            name="templates_app_templateversion_preview",
        )
        return [preview, *super().get_urls()]

    def preview_view(self, request: HttpRequest, object_id: str) -> TemplateResponse:
        """Render a version with `?data=<JSON object>` (default `{}`)."""
        version = self.get_object(request, unquote(object_id))
        if version is None:
            raise Http404("No such template version.")
        if not self.has_view_permission(request, version):
            raise PermissionDenied
        raw = request.GET.get("data", "").strip() or "{}"
        error = ""
        rendered: RenderedEmail | None = None
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            error = f"Sample data is not valid JSON: {exc}"
        else:
            if not isinstance(data, dict):
                error = 'Sample data must be a JSON object, like {"name": "Ada"}.'
            else:
                try:
                    rendered = render_version(version, data)
                except TemplateRenderError as exc:
                    error = str(exc)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": version,
            "title": f"Preview of {version}",
            "data": raw,
            "error": error,
            "rendered": rendered,
        }
        return TemplateResponse(
            request, "admin/templates_app/templateversion/preview.html", context
        )
