"""The Message list in a real browser: an operator finds a message by recipient or by id."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from notifications.services import notify
from tests.browser import seed

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("demo")]


def search(page: Any, text: str) -> None:
    page.fill("#searchbar", text)
    page.press("#searchbar", "Enter")


def test_an_operator_finds_a_message_by_recipient_and_by_id(
    page: Any, login: Any, olga: Any, no_wakeups: list[str],
) -> None:
    sent_to = {to: notify(event="order.placed", to=to, data=seed.ORDER)
               for to in ("ann@example.com", "bob@example.org", "carol@example.com")}
    login(page, olga)

    page.goto("/admin/notifications/message/")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(3)

    search(page, "bob@example.org")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("bob@example.org")
    expect(page.locator("#changelist")).to_contain_text("1 result")

    search(page, str(sent_to["carol@example.com"].pk))
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("carol@example.com")

    search(page, "nobody@example.net")
    expect(page.locator("#result_list")).to_have_count(0)
    expect(page.locator("#changelist")).to_contain_text("0 results")
