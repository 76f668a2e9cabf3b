"""Forms of the template console: every input an operator types is checked here, so a bad value
is a form error on the page, never a 500."""

from __future__ import annotations

from typing import Any

from django import forms

from notifications.models import EventType
from templates_app.models import TemplateVersion
from templates_app.rendering import compile_errors

CONTENT_FIELDS = ("subject", "html_body", "text_body")


class EventTypeChoiceField(forms.ModelChoiceField):
    """Whose sample data a preview or test send renders with."""

    def label_from_instance(self, obj: Any) -> str:
        return f"{obj.key} (template {obj.template.key})"


def _event_type_field() -> EventTypeChoiceField:
    return EventTypeChoiceField(
        queryset=EventType.objects.select_related("template").order_by("key"),
        required=False,
        empty_label="(no sample data)",
        label="Sample data of",
    )


class TemplateVersionAddForm(forms.ModelForm):
    activate = forms.BooleanField(
        initial=True,
        required=False,
        help_text="Make this the active version for its locale (the current one is kept; messages"
        " already queued keep rendering from the version they are pinned to).",
    )

    class Meta:
        model = TemplateVersion
        fields = ("template", "locale", *CONTENT_FIELDS)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        sources = {field: cleaned.get(field) or "" for field in CONTENT_FIELDS}
        for error in compile_errors(**sources):
            if error.field not in self.errors:
                self.add_error(error.field, f"Line {error.line}: {error.reason}")
        return cleaned


class DraftPreviewForm(forms.Form):
    """The editor's unsaved sources, rendered by the draft preview endpoint."""

    subject = forms.CharField(required=False, strip=False, max_length=500)
    html_body = forms.CharField(required=False, strip=False)
    text_body = forms.CharField(required=False, strip=False)
    event_type = _event_type_field()


class PreviewDataForm(forms.Form):
    event_type = _event_type_field()


class TestSendForm(forms.Form):
    to_email = forms.EmailField(label="Send to", max_length=254)
    event_type = _event_type_field()


class ActivateForm(forms.Form):
    reason = forms.CharField(
        required=False, max_length=1000, widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
        help_text="Optional: why (kept in the audit log).",
    )


class VersionChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        state = " (active)" if obj.is_active else ""
        return f"v{obj.pk} [{obj.locale}] {obj.created_at:%Y-%m-%d %H:%M}{state}"


class DiffForm(forms.Form):
    old = VersionChoiceField(queryset=TemplateVersion.objects.none(), label="From")
    new = VersionChoiceField(queryset=TemplateVersion.objects.none(), label="To")

    def __init__(self, *args: Any, template_id: int | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        versions = TemplateVersion.objects.select_related("template").order_by("locale", "-pk")
        if template_id is not None:
            versions = versions.filter(template_id=template_id)
        for name in ("old", "new"):
            self.fields[name].queryset = versions  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        old, new = cleaned.get("old"), cleaned.get("new")
        if old and new and old.template_id != new.template_id:
            raise forms.ValidationError("Pick two versions of the same template.")
        return cleaned
