"""The dead-letter list in a real browser: what an operator and a viewer see and may do."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from notifications.models import Message, Status
from notifications.services import notify
from tests.browser import seed

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("demo")]

DLQ = "/admin/dlq/deadletter/"


def action_values(page: Any) -> list[str]:
    return [o.get_attribute("value") or "" for o in page.locator(
        "select[name=action] option").all()]


def test_it_lists_dead_letters_and_an_operator_requeues_one(
    page: Any, login: Any, olga: Any, no_wakeups: list[str],
) -> None:
    dead = seed.dead_letter(to="ann@example.com")
    # Another lane's message: not a dead letter, and its wake-up is not the requeue's.
    notify(event="marketing.newsletter", to="alive@example.com", data=seed.NEWSLETTER)
    no_wakeups.clear()  # the two notify() calls' own wake-ups
    login(page, olga)

    page.click("text=Dead letters")  # from the admin index, as an operator gets there
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("ann@example.com")
    expect(rows.first).to_contain_text("Out of attempts")
    expect(rows.first).to_contain_text("SMTPDataError")

    page.check(f"input[name=_selected_action][value='{dead.pk}']")
    page.select_option("select[name=action]", "requeue")
    page.click("button[name=index]")

    expect(page.locator("ul.messagelist")).to_contain_text("Requeued 1 message(s).")
    expect(page.locator("#result_list")).to_have_count(0)  # the list is empty now
    dead.refresh_from_db()
    assert (dead.status, dead.attempts, dead.dead_reason) == (Status.PENDING, 0, "")
    assert no_wakeups == ["transactional"]


@pytest.mark.xfail(strict=True, reason=(
    "dlq/admin.py's requeue action declares no permission: on main a viewer is offered it and "
    "its POST requeues. Remove this mark when the DLQ work gates it (strict: it fails then)."))
def test_a_viewer_is_not_offered_requeue_and_cannot_post_it(
    page: Any, login: Any, vic: Any, no_wakeups: list[str],
) -> None:
    dead = seed.dead_letter()
    login(page, vic)

    page.goto(DLQ)
    expect(page.locator("#result_list tbody tr")).to_have_count(1)  # a viewer reads the DLQ
    assert "requeue" not in action_values(page)

    # Posting the action anyway, with the viewer's own session and CSRF token. The answer may be
    # a 403 (a check in the view) or Django's "No action selected." (the action is not offered
    # to this user); either way nothing may move.
    token = page.locator("input[name=csrfmiddlewaretoken]").first.input_value()
    response = page.request.post(DLQ, max_redirects=0, form={
        "csrfmiddlewaretoken": token, "action": "requeue", "index": "0",
        "_selected_action": str(dead.pk)})

    assert response.status in (200, 302, 403)
    after = Message.objects.get(pk=dead.pk)
    assert (after.status, after.attempts) == (Status.DEAD, dead.attempts)
    assert no_wakeups == []
    page.goto(DLQ)
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    expect(page.locator("body")).not_to_contain_text("Requeued")
