"""A template version's preview in a real browser: the email renders inside the admin page."""

from __future__ import annotations

import json
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser import seed

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("demo")]


def test_a_version_preview_renders_the_email_inside_its_page(
    page: Any, login: Any, olga: Any,
) -> None:
    login(page, olga)
    page.goto("/admin/templates_app/templateversion/?q=order-confirmation")
    page.click("#result_list tbody tr >> text=Preview")

    page.click("summary:has-text('Or render with your own data')")
    page.fill("#id_data", json.dumps(seed.ORDER))
    page.click("details input[type=submit][value=Render]")

    expect(page.locator(".preview-subject")).to_have_text("Order 1 confirmed")
    email = page.frame_locator("iframe[sandbox]")
    expect(email.locator("h1")).to_have_text("Thanks for your order")
    expect(email.locator("li")).to_have_text("2 × Tea")
    expect(page.locator(".preview-text")).to_contain_text("Tea")
    # The email is shown in a sandboxed frame: no script in it runs with the admin's rights.
    assert page.locator("iframe").get_attribute("sandbox") == ""

    page.fill("#id_data", "[1, 2]")  # the details stay open when data was given
    page.click("details input[type=submit][value=Render]")
    expect(page.locator(".errornote")).to_contain_text("must be a JSON object")
    expect(page.locator("iframe")).to_have_count(0)
