"""A viewer is refused every page that changes something; an operator reaches the same pages."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from templates_app.models import Template

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
