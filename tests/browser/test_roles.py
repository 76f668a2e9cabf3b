"""A viewer is refused every page that changes something; an operator reaches the same pages;
a form posted without its CSRF token is refused to anyone."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from notifications.models import Message, Status
from templates_app.models import Template
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
