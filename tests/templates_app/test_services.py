from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from templates_app.exceptions import NoActiveTemplateVersion, TemplateCompileError
from templates_app.models import Template, TemplateVersion
from templates_app.selectors import template_version_active
from templates_app.services import (
    template_create,
    template_version_activate,
    template_version_create,
)

pytestmark = pytest.mark.django_db


def _active(template: Template, locale: str = "en") -> TemplateVersion:
    return TemplateVersion.objects.get(template=template, locale=locale, is_active=True)


def test_it_creates_a_template_with_an_active_first_version(django_user_model) -> None:
    user = django_user_model.objects.create_user(username="editor")

    template = template_create(
        key="welcome", description="Sign-up", subject="Hi", html_body="<p>Hi</p>", created_by=user
    )

    version = template.versions.get()
    assert (version.locale, version.is_active, version.created_by) == ("en", True, user)
    assert (version.subject, version.html_body, version.text_body) == ("Hi", "<p>Hi</p>", "")


def test_it_writes_nothing_when_the_first_version_does_not_compile() -> None:
    with pytest.raises(TemplateCompileError):
        template_create(key="welcome", subject="Hi", html_body="{% include 'x.html' %}")

    assert not Template.objects.exists()
    assert not TemplateVersion.objects.exists()


def test_it_rejects_a_bad_template_key() -> None:
    with pytest.raises(ValidationError):
        template_create(key="not a slug", subject="Hi", html_body="<p>Hi</p>")

    assert not Template.objects.exists()


def test_it_deactivates_the_previous_version_when_a_new_one_is_created() -> None:
    template = template_create(key="welcome", subject="v1", html_body="<p>1</p>")
    first = _active(template)
    template_version_create(template=template, locale="fr", subject="fr", html_body="<p>fr</p>")

    second = template_version_create(template=template, locale="en", subject="v2", html_body="2")

    first.refresh_from_db()
    assert not first.is_active
    assert second.is_active
    assert _active(template) == second
    assert _active(template, "fr").subject == "fr"  # other locales untouched


def test_it_can_create_an_inactive_draft_version() -> None:
    template = template_create(key="welcome", subject="v1", html_body="<p>1</p>")

    draft = template_version_create(
        template=template, locale="en", subject="v2", html_body="2", activate=False
    )

    assert not draft.is_active
    assert _active(template).subject == "v1"


def test_it_keeps_the_active_version_when_a_new_one_does_not_compile() -> None:
    template = template_create(key="welcome", subject="v1", html_body="<p>1</p>")

    with pytest.raises(TemplateCompileError) as info:
        template_version_create(
            template=template, locale="en", subject="v2", html_body="ok\n{% debug %}"
        )

    assert (info.value.field, info.value.line) == ("html_body", 2)
    assert template.versions.count() == 1
    assert _active(template).subject == "v1"


def test_it_activates_an_older_version_again() -> None:
    template = template_create(key="welcome", subject="v1", html_body="<p>1</p>")
    first = _active(template)
    template_version_create(template=template, locale="en", subject="v2", html_body="2")

    template_version_activate(version=first)

    assert _active(template).subject == "v1"
    assert template.versions.filter(is_active=True).count() == 1


def test_it_finds_the_active_version_for_the_exact_locale() -> None:
    template = template_create(key="welcome", subject="en", html_body="en")
    template_version_create(template=template, locale="pt", subject="pt", html_body="pt")
    template_version_create(template=template, locale="pt-BR", subject="pt-BR", html_body="x")

    assert template_version_active(template=template, locale="pt-BR").subject == "pt-BR"


def test_it_falls_back_to_the_language_then_the_default_language() -> None:
    template = template_create(key="welcome", subject="en", html_body="en")
    template_version_create(template=template, locale="pt", subject="pt", html_body="pt")

    assert template_version_active(template=template, locale="pt-BR").subject == "pt"
    assert template_version_active(template=template, locale="pt_PT").subject == "pt"
    assert template_version_active(template=template, locale="de-AT").subject == "en"


def test_it_ignores_inactive_versions_when_falling_back() -> None:
    template = template_create(key="welcome", subject="en", html_body="en")
    template_version_create(
        template=template, locale="pt-BR", subject="draft", html_body="x", activate=False
    )

    assert template_version_active(template=template, locale="pt-BR").subject == "en"


def test_it_raises_when_no_locale_in_the_chain_is_active() -> None:
    template = template_create(key="welcome", locale="fr", subject="fr", html_body="fr")

    with pytest.raises(NoActiveTemplateVersion, match="'welcome'.*'de-AT'"):
        template_version_active(template=template, locale="de-AT")


def test_it_looks_up_the_active_version_in_one_query(django_assert_num_queries) -> None:
    template = template_create(key="welcome", subject="en", html_body="en")

    with django_assert_num_queries(1):
        version = template_version_active(template=template, locale="pt-BR")
        assert version.template.key == "welcome"
