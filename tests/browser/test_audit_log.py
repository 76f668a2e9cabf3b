"""The audit log in a real browser: entries readable and searchable, nothing to add or change."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from notifications.audit import audit_record
from notifications.models import AuditAction, AuditEntry

pytestmark = pytest.mark.browser


def test_an_operator_reads_and_searches_the_audit_log(page: Any, login: Any, olga: Any) -> None:
    audit_record(user=olga, action=AuditAction.REQUEUE, target="dead letters: max_attempts",
                 count=3, reason="provider is back up", filter={"dead_reason": "max_attempts"})
    audit_record(user="shell-admin", action=AuditAction.PAUSE, target="lane bulk",
                 reason="newsletter bounce storm")
    login(page, olga)

    page.click("text=Audit log")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("shell-admin")  # newest first
    expect(rows.nth(0)).to_contain_text("Pause lane")
    expect(rows.nth(1)).to_contain_text("olga")
    expect(rows.nth(1)).to_contain_text("provider is back up")
    expect(page.locator(".object-tools .addlink")).to_have_count(0)  # append-only

    page.fill("#searchbar", "bounce")
    page.press("#searchbar", "Enter")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("newsletter bounce storm")

    # An entry's own page is read-only: no Save, no Delete.
    page.click("#result_list tbody tr th a")
    expect(page.locator("#content")).to_contain_text("lane bulk")
    expect(page.locator("input[name=_save]")).to_have_count(0)
    expect(page.locator("a.deletelink")).to_have_count(0)
    assert AuditEntry.objects.count() == 2
