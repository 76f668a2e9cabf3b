"""The template console in a real browser: an operator edits a template (draft preview, save as
a new active version), diffs the two versions and rolls back through the blast radius."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from notifications.models import AuditAction, AuditEntry
from notifications.services import notify
from templates_app.models import Template, TemplateVersion
from tests.browser import seed

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("demo")]

OLD_SUBJECT = "Order {{ order_id }} confirmed"
NEW_SUBJECT = "Order {{ order_id }} is on its way"


def test_an_operator_edits_previews_diffs_and_rolls_back_a_template(
    page: Any, login: Any, olga: Any, no_wakeups: list[str],
) -> None:
    template = Template.objects.get(key="order-confirmation")
    old = TemplateVersion.objects.get(template=template, locale="en", is_active=True)
    change_url = reverse("admin:templates_app_template_change", args=[template.pk])
    login(page, olga)

    # 1. The editor, prefilled from the active version; the draft preview renders unsaved text.
    page.goto(change_url)
    page.click("text=Edit [en] (new version)")
    expect(page.locator("#id_subject")).to_have_value(OLD_SUBJECT)
    page.fill("#id_subject", NEW_SUBJECT)
    page.click("#draft-preview-button")
    expect(page.locator("#draft-preview-status")).to_have_text("Updated.")
    # order.placed's sample data (notifications/demo.py)
    expect(page.locator("#draft-preview-subject")).to_have_text("Order A-10472 is on its way")
    frame = page.frame_locator("#draft-preview-frame")
    expect(frame.locator("h1")).to_have_text("Thanks for your order")
    expect(frame.locator("li").first).to_have_text("2 × Notebook")
    expect(page.locator("#draft-preview-text")).to_contain_text("Notebook")
    expect(page.locator("#draft-preview-errors li")).to_have_count(0)
    assert page.locator("#draft-preview-frame").get_attribute("sandbox") == ""
    assert TemplateVersion.objects.filter(template=template).count() == 1  # preview saves nothing

    # 2. Save: a new version, active at once (the editor's default).
    # The keyboard, not the mouse: a mouse click on Save right after the draft preview was
    # sometimes lost (no click event reached the page; cause not found), a keypress never was.
    page.locator("input[name=_save]").press("Enter")
    expect(page.locator("ul.messagelist")).to_be_visible()
    new = TemplateVersion.objects.get(template=template, locale="en", is_active=True)
    assert new.pk != old.pk and new.subject == NEW_SUBJECT
    old.refresh_from_db()
    assert old.is_active is False and old.subject == OLD_SUBJECT  # versions are immutable
    queued = notify(event="order.placed", to="pinned@example.com", data=seed.ORDER)
    assert queued.template_version_id == new.pk

    # 3. The diff between the two versions shows the subject's change and only that.
    page.goto(reverse("admin:templates_app_templateversion_diff")
              + f"?template={template.pk}&old={old.pk}&new={new.pk}")
    subject_diff = page.locator("#diff-subject")
    expect(subject_diff.locator(".del")).to_have_text(f"-{OLD_SUBJECT}")
    expect(subject_diff.locator(".add")).to_have_text(f"+{NEW_SUBJECT}")
    expect(page.locator("#diff-html_body")).to_have_count(0)
    expect(page.locator("#diff-text_body")).to_have_count(0)

    # 4. Roll back from the template's page, through the blast radius.
    page.goto(change_url)
    page.click(f"text=Roll back [en] to v{old.pk}…")
    expect(page.locator("#blast-radius-total")).to_have_text("1")
    expect(page.locator("#blast-radius-groups tbody tr")).to_have_count(1)
    expect(page.locator("#blast-radius-groups tbody tr")).to_contain_text("order.placed")
    page.fill("#id_reason", "customers read 'on its way' as shipped")
    page.click(f"input[type=submit][value='Yes, roll back to {old}']")

    expect(page.locator("ul.messagelist")).to_contain_text(f"Activated {old}.")
    assert TemplateVersion.objects.get(template=template, locale="en", is_active=True).pk == old.pk
    queued.refresh_from_db()
    assert queued.template_version_id == new.pk  # a queued message keeps its version
    edits = list(AuditEntry.objects.filter(action=AuditAction.TEMPLATE_EDIT))
    assert [(e.username, e.filter["version"]) for e in edits] == [("olga", new.pk)]
    activations = AuditEntry.objects.filter(
        action=AuditAction.TEMPLATE_ACTIVATE).order_by("id")
    assert [(e.username, e.filter["version"], e.filter["replaced"], e.reason)
            for e in activations] == [
        ("olga", new.pk, old.pk, ""),
        ("olga", old.pk, new.pk, "customers read 'on its way' as shipped"),
    ]
    assert activations.last().filter["queued_pinned_to_replaced"] == 1
