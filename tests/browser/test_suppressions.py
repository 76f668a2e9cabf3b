"""The suppression list in a real browser: an operator searches, adds an address with a reason,
and removes it again through the confirmation page; both changes land in the audit log, and a
viewer is offered neither."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from notifications import suppression
from notifications.models import AuditAction, AuditEntry, Status, Suppression, SuppressionReason
from notifications.services import notify
from tests.browser import seed

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("demo")]

LIST = "/admin/notifications/suppression/"


def search(page: Any, text: str) -> None:
    page.fill("#searchbar", text)
    page.press("#searchbar", "Enter")


def test_an_operator_adds_and_removes_a_suppression(
    page: Any, login: Any, olga: Any, no_wakeups: list[str],
) -> None:
    suppression.suppress(email="annabel@example.com", reason=SuppressionReason.HARD_BOUNCE)
    suppression.suppress(email="zed@example.org", reason=SuppressionReason.COMPLAINT)
    login(page, olga)

    page.goto(LIST)
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(2)
    search(page, "ANN")  # the start of an address, any case
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("annabel@example.com")

    # Add: the address, all mail, a reason for the audit log.
    page.click(".object-tools a.addlink")
    page.fill("#id_email", "Ann@Example.com")
    page.select_option("#id_scope", "")
    page.fill("#id_reason", "asked us by phone to stop all mail")
    page.click("input[name=_save]")
    expect(page.locator(".messagelist")).to_contain_text("Suppressed ann@example.com")
    expect(rows).to_have_count(1)  # the list, searched for the new address
    expect(rows.first).to_contain_text("ann@example.com")
    expect(rows.first).to_contain_text("all mail")
    assert notify(event="order.placed", to="ann@example.com",
                  data=seed.ORDER).status == Status.SUPPRESSED

    # Remove: select it, run the action, confirm with a reason.
    rows.first.locator("input.action-select").check()
    page.select_option("select[name=action]", "remove_suppressions")
    page.click("button[name=index]")
    expect(page.locator("#content h1")).to_have_text("Remove from the suppression list")
    expect(page.locator(".eligible")).to_have_text("1")
    page.fill("#id_reason", "customer opted in again")
    page.click("input[type=submit][value^='Yes']")
    expect(page.locator(".messagelist")).to_contain_text("Removed 1 entry")

    row = Suppression.objects.get(email="ann@example.com")
    assert row.active is False  # kept as history
    assert notify(event="order.placed", to="ann@example.com",
                  data=seed.ORDER).status == Status.PENDING
    assert list(AuditEntry.objects.order_by("id").values_list("action", "username", "reason")) \
        == [(AuditAction.SUPPRESS, "olga", "asked us by phone to stop all mail"),
            (AuditAction.UNSUPPRESS, "olga", "customer opted in again")]


def test_a_viewer_sees_the_list_without_add_remove_or_import(
    page: Any, login: Any, vic: Any,
) -> None:
    suppression.suppress(email="ann@example.com", reason=SuppressionReason.COMPLAINT)
    login(page, vic)

    page.goto(LIST)
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    expect(page.locator(".object-tools a.addlink")).to_have_count(0)
    expect(page.locator("a.import-csv")).to_have_count(0)
    expect(page.locator("a.export-csv")).to_have_count(1)
    expect(page.locator("select[name=action] option[value=remove_suppressions]")).to_have_count(0)
    response = page.goto(f"{LIST}add/")
    assert response is not None and response.status == 403
