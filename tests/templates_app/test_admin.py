from __future__ import annotations

import json
from html import unescape

import pytest
from django.test import Client
from django.urls import reverse

from templates_app.models import Template, TemplateVersion
from templates_app.services import template_create, template_version_create

pytestmark = pytest.mark.django_db

ADD_URL = reverse("admin:templates_app_templateversion_add")


@pytest.fixture
def template() -> Template:
    return template_create(
        key="welcome",
        subject="Welcome {{ name }}",
        html_body="<style>p { color: red; }</style><p>Hi {{ name }}</p>",
        text_body="Hi {{ name }}",
    )


def _post_version(client: Client, template: Template, **overrides: object):
    data = {
        "template": template.pk,
        "locale": "en",
        "subject": "Welcome back {{ name }}",
        "html_body": "<p>Hello again {{ name }}</p>",
        "text_body": "",
        "activate": "on",
        **overrides,
    }
    return client.post(ADD_URL, data)


def test_it_prefills_the_add_form_from_the_active_version(admin_client, template) -> None:
    response = admin_client.get(ADD_URL, {"template": template.pk, "locale": "en"})

    assert response.status_code == 200
    form = response.context["adminform"].form
    assert form.initial["subject"] == "Welcome {{ name }}"
    assert form.initial["text_body"] == "Hi {{ name }}"
    assert str(form["template"].value()) == str(template.pk)
    assert form["locale"].value() == "en"


def test_it_links_to_a_new_version_from_the_template_page(admin_client, template) -> None:
    response = admin_client.get(reverse("admin:templates_app_template_change", args=[template.pk]))

    assert response.status_code == 200
    assert f"{ADD_URL}?template={template.pk}&amp;locale=en" in response.content.decode()
    assert "Edit (new version)" in response.content.decode()


def test_it_shows_compile_errors_on_the_field_and_saves_nothing(admin_client, template) -> None:
    response = _post_version(
        admin_client, template, html_body="<p>Hi</p>\n<p>x</p>\n{% load static %}"
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["html_body"]
    assert "Line 3" in errors["html_body"][0]
    assert "'load'" in errors["html_body"][0]
    assert "Line 3" in response.content.decode()
    assert template.versions.count() == 1
    assert template.versions.get().is_active


def test_it_creates_an_active_version_by_the_logged_in_user(admin_client, admin_user, template):
    previous = template.versions.get()

    response = _post_version(admin_client, template)

    assert response.status_code == 302
    new = template.versions.exclude(pk=previous.pk).get()
    previous.refresh_from_db()
    assert new.is_active and not previous.is_active
    assert new.subject == "Welcome back {{ name }}"
    assert new.created_by == admin_user


def test_it_does_not_allow_editing_a_version(admin_client, template) -> None:
    version = template.versions.get()
    url = reverse("admin:templates_app_templateversion_change", args=[version.pk])

    page = admin_client.get(url)
    post = admin_client.post(url, {"subject": "Changed", "html_body": "changed", "locale": "en"})

    assert page.status_code == 200
    assert 'name="subject"' not in page.content.decode()
    assert 'name="html_body"' not in page.content.decode()
    assert "Welcome {{ name }}" in page.content.decode()
    assert post.status_code == 403
    version.refresh_from_db()
    assert version.subject == "Welcome {{ name }}"


def test_it_does_not_allow_deleting_a_version(admin_client, template) -> None:
    version = template.versions.get()
    url = reverse("admin:templates_app_templateversion_delete", args=[version.pk])

    response = admin_client.post(url, {"post": "yes"})

    assert response.status_code == 403
    assert TemplateVersion.objects.filter(pk=version.pk).exists()


def test_it_sends_the_activate_action_to_the_confirmation_page(admin_client, template) -> None:
    first = template.versions.get()
    second = template_version_create(template=template, locale="en", subject="v2", html_body="2")

    response = admin_client.post(
        reverse("admin:templates_app_templateversion_changelist"),
        {"action": "activate_versions", "_selected_action": [first.pk]},
    )

    # The blast radius is shown first: nothing is activated by the action itself.
    assert response.status_code == 302
    assert response["Location"] == reverse(
        "admin:templates_app_templateversion_activate", args=[first.pk])
    first.refresh_from_db()
    second.refresh_from_db()
    assert second.is_active and not first.is_active


def test_it_refuses_to_activate_two_versions_at_once(admin_client, template) -> None:
    first = template.versions.get()
    second = template_version_create(template=template, locale="en", subject="v2", html_body="2")

    response = admin_client.post(
        reverse("admin:templates_app_templateversion_changelist"),
        {"action": "activate_versions", "_selected_action": [first.pk, second.pk]},
        follow=True,
    )

    assert "Select exactly one version to activate" in response.content.decode()
    first.refresh_from_db()
    second.refresh_from_db()
    assert second.is_active and not first.is_active


def _preview(client: Client, version: TemplateVersion, data: str | None = None):
    url = reverse("admin:templates_app_templateversion_preview", args=[version.pk])
    return client.get(url, {} if data is None else {"data": data})


def test_it_previews_a_version_with_sample_data(admin_client, template) -> None:
    response = _preview(admin_client, template.versions.get(), json.dumps({"name": "<Ada>"}))

    assert response.status_code == 200
    body = response.content.decode()
    assert "Welcome &lt;Ada&gt;" in body  # the subject, shown as text
    srcdoc = body.split('srcdoc="', 1)[1].split('"', 1)[0]
    assert "<" not in srcdoc  # the email HTML is escaped into the attribute
    assert '<p style="color: red;">Hi &lt;Ada&gt;</p>' in unescape(srcdoc)
    assert "Hi &lt;Ada&gt;" in body.split('class="preview-text">', 1)[1]


def test_it_previews_with_empty_data_by_default(admin_client, template) -> None:
    response = _preview(admin_client, template.versions.get())

    assert response.status_code == 200
    assert "Welcome" in response.content.decode()


@pytest.mark.parametrize(
    ("data", "message"),
    [("{not json", "not valid JSON"), ("[1, 2]", "must be a JSON object")],
)
def test_it_explains_bad_preview_data(admin_client, template, data, message) -> None:
    response = _preview(admin_client, template.versions.get(), data)

    assert response.status_code == 200
    assert message in response.content.decode()
    assert "srcdoc" not in response.content.decode()


def test_it_shows_render_errors_in_the_preview(admin_client) -> None:
    template = template_create(
        key="pairs", subject="s", html_body="{% for a, b in pairs %}{{ a }}{% endfor %}"
    )

    response = _preview(admin_client, template.versions.get(), '{"pairs": [[1, 2, 3]]}')

    assert response.status_code == 200
    assert "Need 2 values to unpack" in response.content.decode()


def test_it_lists_versions_and_templates(admin_client, template) -> None:
    versions = admin_client.get(reverse("admin:templates_app_templateversion_changelist"))
    templates = admin_client.get(reverse("admin:templates_app_template_changelist"))

    assert versions.status_code == 200
    assert "Activate this version" in versions.content.decode()
    assert templates.status_code == 200
    assert "welcome" in templates.content.decode()


def test_it_adds_a_template_then_its_first_version(admin_client) -> None:
    response = admin_client.post(
        reverse("admin:templates_app_template_add"), {"key": "reset", "description": "Reset"}
    )
    template = Template.objects.get(key="reset")
    page = admin_client.get(reverse("admin:templates_app_template_change", args=[template.pk]))

    assert response.status_code == 302
    assert f"{ADD_URL}?template={template.pk}" in page.content.decode()
