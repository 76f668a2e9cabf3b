"""Reads of templates and their versions."""

from __future__ import annotations

from django.conf import settings

from templates_app.exceptions import NoActiveTemplateVersion
from templates_app.models import Template, TemplateVersion


def locale_candidates(locale: str) -> list[str]:
    """Locales to try, best first: "pt-BR" -> ["pt-BR", "pt", settings.LANGUAGE_CODE]."""
    language = locale.replace("_", "-").split("-", 1)[0]
    candidates: list[str] = []
    for candidate in (locale, language, settings.LANGUAGE_CODE):
        if candidate and candidate not in candidates:
            candidates.append(candidate)
    return candidates


def template_version_active(*, template: Template, locale: str) -> TemplateVersion:
    """The active version for `locale`, else for its language, else for the default language.

    On the enqueue hot path: one query fetches every candidate's active version (at most one per
    locale, by constraint) and the best is picked here.
    """
    candidates = locale_candidates(locale)
    # Through the related manager so version.template is `template` without another query.
    by_locale = {
        version.locale: version
        for version in template.versions.filter(is_active=True, locale__in=candidates)
    }
    for candidate in candidates:
        if candidate in by_locale:
            return by_locale[candidate]
    raise NoActiveTemplateVersion(template_key=template.key, locale=locale)
