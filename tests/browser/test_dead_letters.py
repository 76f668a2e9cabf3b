"""The dead-letter list in a real browser: what an operator and a viewer see and may do."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from dlq.models import Operation
from dlq.operations import operation_run
from notifications.models import AuditAction, AuditEntry, Message, Status
from notifications.services import notify
from tests.browser import seed

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("demo")]

DLQ = "/admin/dlq/deadletter/"


@pytest.fixture
def queued_tasks(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """The operation tasks the console queues, recorded instead of sent to django-q2 (this
    file runs no cluster; test_dlq_operations.py does)."""
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr("dlq.operations.async_task",
                        lambda *args, **kwargs: calls.append((*args, kwargs.get("cluster"))))
    return calls


def action_values(page: Any) -> list[str]:
    return [o.get_attribute("value") or "" for o in page.locator(
        "select[name=action] option").all()]


def test_it_lists_dead_letters_and_an_operator_requeues_one_through_an_operation(
    page: Any, login: Any, olga: Any, no_wakeups: list[str], queued_tasks: list[Any],
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
    page.select_option("select[name=action]", "requeue_selected")
    page.click("button[name=index]")

    # The confirmation page: a dry run first, nothing moved yet.
    expect(page.locator("#dlq-preview")).to_contain_text("Matching dead letters")
    expect(page.locator("#dlq-preview td.lane-transactional")).to_have_text("1")
    assert Message.objects.get(pk=dead.pk).status == Status.DEAD
    page.click("input[type=submit][value='Requeue 1 dead letter(s)']")  # no reason yet
    # The browser holds the form back (the reason is required) ...
    assert page.locator("#id_reason").evaluate("el => el.validity.valueMissing") is True
    expect(page.locator("#dlq-preview")).to_be_visible()
    assert Operation.objects.count() == 0  # ... and the server was not asked

    page.fill("#id_reason", "SMTP relay back up")
    page.click("input[type=submit][value='Requeue 1 dead letter(s)']")

    operation = Operation.objects.get()
    expect(page.locator("ul.messagelist")).to_contain_text(
        f"Operation #{operation.pk} started: requeue of 1 dead letter(s).")
    expect(page.locator("#op-total")).to_have_text("1")
    expect(page.locator("#op-done")).to_have_text("0")
    # The work is a task for the bulk cluster, not the web request: nothing moved yet.
    assert queued_tasks == [("dlq.tasks.operation_run", operation.pk, "bulk")]
    assert Message.objects.get(pk=dead.pk).status == Status.DEAD

    operation_run(operation.pk, requeue_self=False)  # the task, as a worker runs it
    page.reload()

    expect(page.locator("#op-status")).to_have_text("Done")
    expect(page.locator("#op-done")).to_have_text("1")
    expect(page.locator("input[value='Cancel operation']")).to_have_count(0)
    dead.refresh_from_db()
    assert (dead.status, dead.attempts, dead.dead_reason) == (Status.PENDING, 0, "")
    assert no_wakeups == ["transactional"]
    entry = AuditEntry.objects.filter(action=AuditAction.REQUEUE).order_by("id").first()
    assert entry is not None
    assert (entry.username, entry.count, entry.reason) == ("olga", 1, "SMTP relay back up")

    page.goto(DLQ)
    expect(page.locator("#result_list")).to_have_count(0)  # the list is empty now


def test_a_viewer_is_not_offered_requeue_and_cannot_post_it(
    page: Any, login: Any, vic: Any, no_wakeups: list[str], queued_tasks: list[Any],
) -> None:
    dead = seed.dead_letter()
    no_wakeups.clear()  # notify()'s own wake-up
    login(page, vic)

    page.goto(DLQ)
    expect(page.locator("#result_list tbody tr")).to_have_count(1)  # a viewer reads the DLQ
    assert "requeue_selected" not in action_values(page)
    expect(page.locator(".object-tools")).not_to_contain_text("Requeue all matching")

    # Posting the action anyway, with the viewer's own session and CSRF token (the logout
    # form's): refused by the permission check, not by CSRF.
    token = page.locator("#logout-form input[name=csrfmiddlewaretoken]").input_value()
    response = page.request.post(DLQ, max_redirects=0, form={
        "csrfmiddlewaretoken": token, "action": "requeue_selected", "index": "0",
        "_selected_action": str(dead.pk)})

    assert response.status == 403
    assert "CSRF" not in response.text()
    after = Message.objects.get(pk=dead.pk)
    assert (after.status, after.attempts) == (Status.DEAD, dead.attempts)
    assert no_wakeups == [] and queued_tasks == []
    assert Operation.objects.count() == 0
    page.goto(DLQ)
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
