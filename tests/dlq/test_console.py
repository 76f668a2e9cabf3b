from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse

from dlq.models import Operation, OperationStatus
from dlq.operations import operation_create
from dlq.selectors import DeadLetterFilter
from notifications.delivery import message_id_for
from notifications.models import AuditAction, AuditEntry, DeadReason, Message, Outcome, Status
from tests.dlq.helpers import dead_message

pytestmark = pytest.mark.usefixtures("demo", "no_wakeups")

LIST = "admin:dlq_deadletter_changelist"


@pytest.fixture
def enqueued(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr("dlq.operations.async_task", lambda *a, **k: calls.append(a))
    return calls


def member(group: str) -> User:
    user = User.objects.create_user(group, password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    return user


@pytest.fixture
def viewer(client: Client) -> Client:
    client.force_login(member("viewers"))
    return client


@pytest.fixture
def operator() -> Client:
    client = Client()
    client.force_login(member("operators"))
    return client


def test_a_viewer_sees_the_console_but_every_action_url_is_403(viewer: Client,
                                                               enqueued: list[Any]) -> None:
    dead = dead_message()
    operation = operation_create(kind="requeue", flt=DeadLetterFilter(), reason="r", user="a")

    for name, args in ((LIST, []), ("admin:dlq_deadletter_groups", []),
                       ("admin:dlq_deadletter_export", []),
                       ("admin:dlq_deadletter_change", [dead.pk]),
                       ("admin:dlq_operation_progress", [operation.pk])):
        assert viewer.get(reverse(name, args=args)).status_code == 200, name
    list_page = viewer.get(reverse(LIST)).content.decode()
    assert "Requeue all matching" not in list_page and "requeue_selected" not in list_page
    assert "Cancel operation" not in viewer.get(
        reverse("admin:dlq_operation_progress", args=[operation.pk])).content.decode()

    for kind in ("requeue", "discard"):
        url = reverse("admin:dlq_deadletter_confirm", args=[kind])
        assert viewer.get(url).status_code == 403
        assert viewer.post(url, {"reason": "x"}).status_code == 403
        assert viewer.post(reverse(LIST), {"action": f"{kind}_selected",
                                           "_selected_action": [dead.pk]}).status_code == 403
    cancel = reverse("admin:dlq_operation_cancel", args=[operation.pk])
    assert viewer.get(cancel).status_code == 403
    assert viewer.post(cancel).status_code == 403

    assert Message.objects.get(pk=dead.pk).status == Status.DEAD
    assert Operation.objects.get(pk=operation.pk).cancel_requested is False
    assert Operation.objects.count() == 1


def test_an_operator_previews_then_requeues_the_selection(
    operator: Client, enqueued: list[Any], django_capture_on_commit_callbacks: Any,
) -> None:
    ann = dead_message("ann@example.com")
    maybe = dead_message("maybe@example.com", outcome=Outcome.UNKNOWN)
    dead_message("other@example.com")  # not selected

    response = operator.post(reverse(LIST), {"action": "requeue_selected",
                                             "_selected_action": [ann.pk, maybe.pk]})
    assert response.status_code == 302
    page = operator.get(response["Location"]).content.decode()
    assert '<td class="lane-transactional">2</td>' in page
    assert '<td id="maybe-sent">1</td>' in page and "may send them twice" in page

    missing_reason = operator.post(response["Location"], {"reason": " ", "repin": "keep"})
    assert missing_reason.status_code == 200 and not Operation.objects.exists()
    bad_pace = operator.post(response["Location"], {"reason": "x", "pace": "-1",
                                                    "repin": "keep"})
    assert bad_pace.status_code == 200 and not Operation.objects.exists()

    with django_capture_on_commit_callbacks(execute=True):
        done = operator.post(response["Location"], {"reason": "SMTP fixed", "pace": "5",
                                                    "repin": "keep"})

    operation = Operation.objects.get()
    assert done.status_code == 302
    assert done["Location"] == reverse("admin:dlq_operation_progress", args=[operation.pk])
    assert (operation.total, operation.pace, operation.repin, operation.filter) == (
        2, 5.0, "keep", {"pks": sorted([ann.pk, maybe.pk])})
    assert enqueued == [("dlq.tasks.operation_run", operation.pk)]
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.username, entry.count, entry.reason) == (
        AuditAction.REQUEUE, "operators", 2, "SMTP fixed")
    progress = operator.get(done["Location"]).content.decode()
    assert 'http-equiv="refresh"' in progress and "Cancel operation" in progress


def test_everything_matching_the_filter_is_one_action(operator: Client,
                                                      enqueued: list[Any]) -> None:
    perm = dead_message("a@example.com", reason=DeadReason.PERMANENT_ERROR)
    dead_message("b@example.com")  # max_attempts: not matched

    response = operator.post(reverse(LIST) + "?reason=permanent_error", {
        "action": "discard_selected", "select_across": "1",
        "_selected_action": [perm.pk]})

    assert response.status_code == 302
    assert "reason=permanent_error" in response["Location"] and "pks" not in response["Location"]
    operator.post(response["Location"], {"reason": "bad addresses"})
    operation = Operation.objects.get()
    assert (operation.kind, operation.filter, operation.total) == (
        "discard", {"reason": "permanent_error"}, 1)


def test_csrf_holds_on_the_confirmation_form(enqueued: list[Any]) -> None:
    dead_message()
    client = Client(enforce_csrf_checks=True)
    client.force_login(member("operators"))
    url = reverse("admin:dlq_deadletter_confirm", args=["discard"])

    assert client.post(url, {"reason": "x"}).status_code == 403
    assert not Operation.objects.exists()

    client.get(url)
    token = client.cookies["csrftoken"].value
    assert client.post(url, {"reason": "x", "csrfmiddlewaretoken": token}).status_code == 302
    assert Operation.objects.count() == 1


def test_groups_page_counts_and_drills_into_a_group(viewer: Client) -> None:
    a = dead_message("a@example.com")
    dead_message("b@example.com")
    other = dead_message("c@other.org")

    page = viewer.get(reverse("admin:dlq_deadletter_groups")).content.decode()
    assert "<td>2</td>" in page and "<td>1</td>" in page and "Out of attempts" in page

    drilled = viewer.get(reverse(LIST) + f"?signature={a.failure_signature}").content.decode()
    assert "a@example.com" in drilled and "b@example.com" in drilled
    assert "c@other.org" not in drilled
    assert other.failure_signature != a.failure_signature


def test_search_finds_by_message_id_and_bad_filters_are_messages(viewer: Client) -> None:
    ann = dead_message("ann@example.com")
    dead_message("bob@example.com")

    page = viewer.get(reverse(LIST), {"q": message_id_for(ann.pk)}).content.decode()
    assert "ann@example.com" in page and "bob@example.com" not in page

    bad_list = viewer.get(reverse(LIST), {"reason": "nope"})
    assert bad_list.status_code == 302 and "e=1" in bad_list["Location"]
    bad_groups = viewer.get(reverse("admin:dlq_deadletter_groups"), {"since": "soon"},
                            follow=True)
    assert bad_groups.status_code == 200 and "Bad filter: since" in bad_groups.content.decode()


def test_the_detail_page_says_it_may_have_been_sent(viewer: Client) -> None:
    maybe = dead_message(outcome=Outcome.UNKNOWN)
    page = viewer.get(reverse("admin:dlq_deadletter_change", args=[maybe.pk])).content.decode()
    assert "The email may have been sent" in page


def test_csv_export_of_the_filtered_list(viewer: Client) -> None:
    dead_message("a@example.com", reason=DeadReason.PERMANENT_ERROR, error="=HYPERLINK(x)")
    dead_message("b@example.com")

    response = viewer.get(reverse("admin:dlq_deadletter_export"), {"reason": "permanent_error"})

    body = b"".join(response.streaming_content).decode()
    assert body.splitlines()[0].startswith("id,event_type,to_email")
    assert "a@example.com" in body and "b@example.com" not in body


def test_an_operator_cancels_a_running_operation(operator: Client, enqueued: list[Any]) -> None:
    dead_message()
    operation = operation_create(kind="requeue", flt=DeadLetterFilter(), reason="r", user="a")
    Operation.objects.filter(pk=operation.pk).update(status=OperationStatus.RUNNING)

    response = operator.post(reverse("admin:dlq_operation_cancel", args=[operation.pk]),
                             follow=True)

    assert "cancel requested" in response.content.decode()
    assert Operation.objects.get(pk=operation.pk).cancel_requested is True
    assert AuditEntry.objects.filter(action=AuditAction.OPERATION_CANCEL).count() == 1


def failed_operation(error: str = "RuntimeError: disk full") -> Operation:
    dead_message()
    operation = operation_create(kind="requeue", flt=DeadLetterFilter(), reason="r", user="a")
    Operation.objects.filter(pk=operation.pk).update(status=OperationStatus.FAILED, error=error)
    return Operation.objects.get(pk=operation.pk)


def test_a_viewer_cannot_retry_a_failed_operation(viewer: Client, enqueued: list[Any]) -> None:
    operation = failed_operation()
    progress = reverse("admin:dlq_operation_progress", args=[operation.pk])
    retry = reverse("admin:dlq_operation_retry", args=[operation.pk])

    page = viewer.get(progress).content.decode()
    assert "disk full" in page and "Retry from where it stopped" not in page
    assert viewer.get(retry).status_code == 403
    assert viewer.post(retry).status_code == 403  # posting directly, past the missing button

    assert Operation.objects.get(pk=operation.pk).status == OperationStatus.FAILED
    assert enqueued == []
    assert not AuditEntry.objects.filter(action=AuditAction.OPERATION_RETRY).exists()


def test_an_operator_retries_a_failed_operation_with_its_csrf_token(
    enqueued: list[Any], django_capture_on_commit_callbacks: Any,
) -> None:
    operation = failed_operation()
    client = Client(enforce_csrf_checks=True)
    client.force_login(member("operators"))
    progress = reverse("admin:dlq_operation_progress", args=[operation.pk])
    retry = reverse("admin:dlq_operation_retry", args=[operation.pk])

    assert client.post(retry).status_code == 403  # no CSRF token
    assert Operation.objects.get(pk=operation.pk).status == OperationStatus.FAILED
    assert client.get(retry).status_code == 405

    page = client.get(progress).content.decode()
    assert "Retry from where it stopped" in page and f'action="{retry}"' in page
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(retry, {"csrfmiddlewaretoken": token})

    assert response.status_code == 302 and response["Location"] == progress
    retried = Operation.objects.get(pk=operation.pk)
    assert (retried.status, retried.error, retried.finished_at) == (
        OperationStatus.PENDING, "", None)
    assert enqueued == [("dlq.tasks.operation_run", operation.pk)]
    entry = AuditEntry.objects.get(action=AuditAction.OPERATION_RETRY)
    assert entry.username == "operators" and "disk full" in entry.reason
    # It is running again: no second retry, and the button is gone.
    assert "Retry from where it stopped" not in client.get(progress).content.decode()
    assert client.post(retry, {"csrfmiddlewaretoken": token}).status_code == 302
    assert AuditEntry.objects.filter(action=AuditAction.OPERATION_RETRY).count() == 1


@pytest.mark.parametrize("status", [OperationStatus.DONE, OperationStatus.CANCELLED,
                                    OperationStatus.RUNNING])
def test_only_a_failed_operation_offers_retry(operator: Client, enqueued: list[Any],
                                              status: OperationStatus) -> None:
    operation = failed_operation()
    Operation.objects.filter(pk=operation.pk).update(status=status)

    page = operator.get(reverse("admin:dlq_operation_progress", args=[operation.pk]))

    assert "Retry from where it stopped" not in page.content.decode()
    operator.post(reverse("admin:dlq_operation_retry", args=[operation.pk]))
    assert Operation.objects.get(pk=operation.pk).status == status
    assert enqueued == []
