"""A viewer is refused every page that changes something (the DLQ and template consoles' action
URLs included, GET and POST); an operator reaches the same pages; a form posted without its
CSRF token is refused to anyone."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from dlq.models import Operation
from dlq.operations import operation_create
from dlq.selectors import DeadLetterFilter
from notifications.models import AuditEntry, Message, Status
from templates_app.models import Template, TemplateVersion
from templates_app.services import template_version_create
from tests.browser import seed

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("demo")]

ADD_URLS = [
    reverse("admin:templates_app_templateversion_add"),
    reverse("admin:templates_app_template_add"),
]


def test_a_viewer_gets_403_on_add_urls_and_on_posting_a_change(
    page: Any, login: Any, vic: Any,
) -> None:
    template = Template.objects.get(key="order-confirmation")
    login(page, vic)

    for url in ADD_URLS:
        response = page.goto(url)
        assert response is not None and response.status == 403, url

    # The change page is readable (viewers read everything) but offers no Save ...
    change_url = reverse("admin:templates_app_template_change", args=[template.pk])
    response = page.goto(change_url)
    assert response is not None and response.status == 200
    expect(page.locator("#content h1")).to_contain_text("View template")
    expect(page.locator("input[name=_save]")).to_have_count(0)
    # ... and posting the form anyway, with a valid session and CSRF token, is refused.
    token = page.locator("input[name=csrfmiddlewaretoken]").first.input_value()
    response = page.request.post(change_url, max_redirects=0, form={
        "csrfmiddlewaretoken": token, "key": "hijacked", "description": "changed by a viewer",
        "_save": "Save"})

    assert response.status == 403
    template.refresh_from_db()
    assert (template.key, template.description) == ("order-confirmation",
                                                    "An order was placed: order confirmation.")


def test_an_operator_reaches_the_same_add_urls(page: Any, login: Any, olga: Any) -> None:
    login(page, olga)

    for url in ADD_URLS:
        response = page.goto(url)
        assert response is not None and response.status == 200, url
        expect(page.locator("input[name=_save]")).to_have_count(1)


def test_an_operator_s_post_without_the_csrf_token_is_refused(
    page: Any, login: Any, olga: Any, no_wakeups: list[str],
) -> None:
    dead = seed.dead_letter()
    login(page, olga)

    # The operator's own session cookie goes along; only the form's token is missing.
    response = page.request.post("/admin/dlq/deadletter/", max_redirects=0, form={
        "action": "requeue", "index": "0", "_selected_action": str(dead.pk)})

    assert response.status == 403
    assert "CSRF" in response.text()
    assert Message.objects.get(pk=dead.pk).status == Status.DEAD


def test_a_viewer_reads_the_consoles_but_every_action_url_is_403(
    page: Any, login: Any, vic: Any, no_wakeups: list[str],
) -> None:
    dead = seed.dead_letter()
    operation = operation_create(kind="requeue", flt=DeadLetterFilter(), reason="outage over",
                                 user="olga")
    failed = operation_create(kind="discard", flt=DeadLetterFilter(), reason="cleanup",
                              user="olga")
    Operation.objects.filter(pk=failed.pk).update(status="failed", error="RuntimeError: boom")
    template = Template.objects.get(key="order-confirmation")
    active = TemplateVersion.objects.get(template=template, locale="en", is_active=True)
    old = template_version_create(template=template, locale="en", subject="Old subject",
                                  html_body="<p>old</p>", activate=False)
    audited = AuditEntry.objects.count()
    login(page, vic)

    # The groups page is readable and offers no action.
    page.goto(reverse("admin:dlq_deadletter_groups"))
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    expect(page.locator("#result_list")).not_to_contain_text("Requeue group")
    expect(page.locator("#result_list")).not_to_contain_text("Discard group")
    page.goto(reverse("admin:dlq_operation_progress", args=[operation.pk]))
    expect(page.locator("#op-status")).to_have_text("Pending")
    expect(page.locator("input[value='Cancel operation']")).to_have_count(0)
    page.goto(reverse("admin:dlq_operation_progress", args=[failed.pk]))
    expect(page.locator("#op-error")).to_have_text("RuntimeError: boom")
    expect(page.locator("input[value='Retry from where it stopped']")).to_have_count(0)
    # A valid token of the viewer's own session (the logout form's): refusals below are the
    # permission checks, not CSRF.
    token = page.locator("#logout-form input[name=csrfmiddlewaretoken]").input_value()

    refused = [
        reverse("admin:dlq_deadletter_confirm", args=["requeue"]),
        reverse("admin:dlq_deadletter_confirm", args=["discard"]),
        reverse("admin:dlq_operation_cancel", args=[operation.pk]),
        reverse("admin:dlq_operation_retry", args=[failed.pk]),
        reverse("admin:templates_app_templateversion_add") + f"?template={template.pk}&locale=en",
        reverse("admin:templates_app_templateversion_activate", args=[old.pk]),
        reverse("admin:templates_app_templateversion_draft_preview"),
        reverse("admin:templates_app_templateversion_test_send", args=[active.pk]),
    ]
    form = {"csrfmiddlewaretoken": token, "reason": "a viewer tries", "pace": "1",
            "repin": "failed_only", "template": str(template.pk), "locale": "en",
            "subject": "hijacked", "html_body": "<p>x</p>", "to_email": "vic@example.com"}
    for url in refused:
        if "draft-preview" not in url:  # POST only
            got = page.goto(url)
            assert got is not None and got.status == 403, ("GET", url, got and got.status)
        posted = page.request.post(url, form=form, max_redirects=0)
        assert posted.status == 403, ("POST", url, posted.status)
        assert "CSRF" not in posted.text(), url

    # Nothing moved, nothing was asked for, nothing was audited.
    assert Message.objects.get(pk=dead.pk).status == Status.DEAD
    operation.refresh_from_db()
    assert (operation.cancel_requested, operation.status) == (False, "pending")
    assert Operation.objects.get(pk=failed.pk).status == "failed"
    assert Operation.objects.count() == 2
    assert TemplateVersion.objects.get(template=template, locale="en", is_active=True) == active
    assert not TemplateVersion.objects.filter(subject="hijacked").exists()
    assert AuditEntry.objects.count() == audited
