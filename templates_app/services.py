"""Writes of templates and their versions.

Versions are immutable: editing a template means creating a new version, and rolling back means
activating an older one. Nothing here updates a version's content.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from templates_app.models import Template, TemplateVersion
from templates_app.rendering import compile_check
from templates_app.signals import versions_changed


def _versions_changed(template_id: int) -> None:
    """Tell version caches now (this transaction's own reads) and on commit (everyone's)."""
    versions_changed.send(sender=TemplateVersion, template_id=template_id)
    transaction.on_commit(
        lambda: versions_changed.send(sender=TemplateVersion, template_id=template_id))


def _lock_template(template_id: int) -> None:
    # Serialises version writes per template (Postgres; SQLite's IMMEDIATE transactions already
    # serialise writers), so two concurrent activations cannot both pass the deactivate step and
    # then trip the one-active-version constraint.
    Template.objects.select_for_update().filter(pk=template_id).first()


def template_version_create(
    *,
    template: Template,
    locale: str,
    subject: str,
    html_body: str,
    text_body: str = "",
    created_by: Any = None,
    activate: bool = True,
) -> TemplateVersion:
    """Create a version, after checking that it compiles (raises TemplateCompileError).

    1. Compile every field; on failure nothing is written.
    2. In one transaction: deactivate the locale's active version (if `activate`), create this one.
    """
    compile_check(subject=subject, html_body=html_body, text_body=text_body)
    with transaction.atomic():
        if activate:
            _lock_template(template.pk)
            current = TemplateVersion.objects.filter(template=template, locale=locale)
            if current.filter(is_active=True).update(is_active=False):
                _versions_changed(template.pk)
        return TemplateVersion.objects.create(
            template=template,
            locale=locale,
            subject=subject,
            html_body=html_body,
            text_body=text_body,
            created_by=created_by,
            is_active=activate,
        )


def template_create(
    *,
    key: str,
    description: str = "",
    locale: str = "en",
    subject: str,
    html_body: str,
    text_body: str = "",
    created_by: Any = None,
) -> Template:
    """Create a template with its first, active version (raises TemplateCompileError)."""
    compile_check(subject=subject, html_body=html_body, text_body=text_body)
    with transaction.atomic():
        template = Template(key=key, description=description)
        template.full_clean()  # slug format and key uniqueness, as a ValidationError
        template.save()
        template_version_create(
            template=template,
            locale=locale,
            subject=subject,
            html_body=html_body,
            text_body=text_body,
            created_by=created_by,
        )
    return template


def template_version_activate(*, version: TemplateVersion) -> TemplateVersion:
    """Make `version` the active one for its locale (e.g. roll back to an older version)."""
    with transaction.atomic():
        _lock_template(version.template_id)
        siblings = TemplateVersion.objects.filter(
            template_id=version.template_id, locale=version.locale
        ).exclude(pk=version.pk)
        siblings.filter(is_active=True).update(is_active=False)
        TemplateVersion.objects.filter(pk=version.pk).update(is_active=True)
        _versions_changed(version.template_id)
    version.is_active = True
    return version
