from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from notifications import transitions
from notifications.delivery import claim_batch
from notifications.models import DeadReason, Message, Status
from notifications.services import messages_requeue, notify

pytestmark = pytest.mark.usefixtures("demo")

ORDER = {"order_id": 1, "total": "1", "items": []}


def dead_message(to: str = "ann@example.com") -> Message:
    message = notify(event="order.placed", to=to, data=ORDER)
    [claimed] = [m for m in claim_batch("transactional", 10) if m.pk == message.pk]
    transitions.kill([message.pk], token=claimed.lease_token, reason=DeadReason.MAX_ATTEMPTS,
                     error="smtplib.SMTPDataError: (451, b'try later')")
    return Message.objects.get(pk=message.pk)


def test_the_dlq_lists_only_dead_messages_with_their_reason(admin_client: Any,
                                                            no_wakeups: list[str]) -> None:
    dead = dead_message()
    notify(event="order.placed", to="alive@example.com", data=ORDER)

    page = admin_client.get(reverse("admin:dlq_deadletter_changelist")).content.decode()

    assert "ann@example.com" in page and "alive@example.com" not in page
    assert "max_attempts" in page and "SMTPDataError" in page
    detail = admin_client.get(reverse("admin:dlq_deadletter_change", args=[dead.pk]))
    assert detail.status_code == 200
    assert "Order 1 confirmed" in detail.content.decode()


def requeue_through_the_console(client: Any, pks: list[int], **form: Any) -> Any:
    """Select, confirm with a reason, and run the operation's task as the cluster would."""
    from dlq.models import Operation
    from dlq.operations import operation_run

    changelist = reverse("admin:dlq_deadletter_changelist")
    confirm = client.post(changelist, {"action": "requeue_selected",
                                       "_selected_action": pks})
    assert confirm.status_code == 302 and "/confirm/requeue/" in confirm["Location"]
    created = client.post(confirm["Location"], {"reason": "provider fixed",
                                                "repin": "failed_only", **form})
    assert created.status_code == 302, created.content.decode()
    operation = Operation.objects.latest("id")
    operation_run(operation.pk, budget=60, requeue_self=False)
    return client.get(reverse("admin:dlq_operation_progress", args=[operation.pk]))


def test_requeue_resets_the_retry_bookkeeping_and_wakes_the_lane(
    admin_client: Any, no_wakeups: list[str], django_capture_on_commit_callbacks: Any,
    monkeypatch: Any,
) -> None:
    monkeypatch.setattr("dlq.operations.async_task", lambda *a, **k: None)
    dead = dead_message()
    no_wakeups.clear()

    with django_capture_on_commit_callbacks(execute=True):
        page = requeue_through_the_console(admin_client, [dead.pk]).content.decode()

    assert "Done" in page and '<td id="op-done">1</td>' in page
    dead.refresh_from_db()
    assert (dead.status, dead.attempts, dead.dead_reason, dead.lease_until) == (
        Status.PENDING, 0, "", None)
    assert no_wakeups == ["transactional"]


def test_requeue_leaves_messages_that_are_no_longer_dead(
    no_wakeups: list[str], django_capture_on_commit_callbacks: Any,
) -> None:
    dead = dead_message()
    pending = notify(event="order.placed", to="alive@example.com", data=ORDER)
    assert messages_requeue(pks=[dead.pk]) == 1

    # The first is pending again and the other never died: neither is touched or counted,
    # and no lane is woken for them.
    with django_capture_on_commit_callbacks() as wakeups:
        moved = messages_requeue(pks=[dead.pk, pending.pk])

    assert moved == 0
    assert wakeups == []
    assert [Message.objects.get(pk=pk).status for pk in (dead.pk, pending.pk)] == [
        Status.PENDING, Status.PENDING]


def test_requeueing_a_row_that_left_the_dlq_meanwhile_counts_nothing(
    admin_client: Any, no_wakeups: list[str], monkeypatch: Any,
) -> None:
    monkeypatch.setattr("dlq.operations.async_task", lambda *a, **k: None)
    dead = dead_message()
    requeue_through_the_console(admin_client, [dead.pk])

    # A second operator's page still lists it: the selection no longer matches a dead letter.
    page = requeue_through_the_console(admin_client, [dead.pk]).content.decode()

    assert '<td id="op-total">0</td>' in page and '<td id="op-done">0</td>' in page
    assert Message.objects.get(pk=dead.pk).status == Status.PENDING


def test_queue_stats_page_and_cancel_action(admin_client: Any, no_wakeups: list[str]) -> None:
    dead_message("bob@example.com")
    message = notify(event="order.placed", to="ann@example.com", data=ORDER)

    page = admin_client.get(reverse("admin:notifications_message_stats")).content.decode()
    assert "transactional" in page and "bulk" in page

    response = admin_client.post(
        reverse("admin:notifications_message_changelist"),
        {"action": "cancel_messages", "_selected_action": [message.pk],
         "confirm": "yes", "reason": "test"}, follow=True,  # past the confirmation page
    )
    assert "Cancelled 1 message(s)." in response.content.decode()
    assert Message.objects.get(pk=message.pk).status == Status.CANCELLED
    detail = admin_client.get(reverse("admin:notifications_message_change", args=[message.pk]))
    assert detail.status_code == 200


def test_requeue_after_a_template_fix_renders_with_the_new_version(
    admin_client: Any, outbox: list[Any], no_wakeups: list[str], monkeypatch: Any,
) -> None:
    monkeypatch.setattr("dlq.operations.async_task", lambda *a, **k: None)
    from notifications.delivery import drain_lane
    from templates_app.models import TemplateVersion
    from templates_app.services import template_version_create

    message = notify(event="order.placed", to="ann@example.com", data=ORDER)
    TemplateVersion.objects.filter(pk=message.template_version_id).update(
        html_body="{% load secrets %}")  # a version that stopped rendering
    drain_lane("transactional", budget=2)
    message.refresh_from_db()
    assert (message.status, message.dead_reason) == (Status.DEAD, "render_failed")

    template_version_create(template=message.event_type.template, locale="en",
                            subject="Fixed {{ order_id }}", html_body="<p>fixed</p>")
    requeue_through_the_console(admin_client, [message.pk])
    drain_lane("transactional", budget=2)

    message.refresh_from_db()
    assert message.status == Status.SENT
    assert [e.subject for e in outbox if e.to == ["ann@example.com"]] == ["Fixed 1"]
