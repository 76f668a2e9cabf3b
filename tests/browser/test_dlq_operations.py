"""DLQ operations in a real browser, worked by real clusters: an operator groups dead letters,
requeues one group at a pace and watches it go out to a fake Postmark; another cancels a slow
operation halfway. The `bulk` cluster runs the operation's task, the `transactional` cluster
sends what it requeued (the console's own wake-ups, nothing patched)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect

from dlq.models import Operation, OperationStatus
from notifications.delivery import message_id_for
from notifications.models import AuditAction, AuditEntry, DeadReason, Message, Status
from tests.browser import seed
from tests.e2e.conftest import wait_until
from tests.fakes.postmark import FakePostmark

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.usefixtures("demo")]

DLQ = "/admin/dlq/deadletter/"
GROUPS = "/admin/dlq/deadletter/groups/"
TRY_LATER = "smtplib.SMTPDataError: (451, b'4.3.0 try later')"
NO_MAILBOX = "smtplib.SMTPRecipientsRefused: 550 5.1.1 mailbox unavailable"


@pytest.fixture
def postmark() -> Iterator[FakePostmark]:
    with FakePostmark() as fake:
        yield fake


@pytest.fixture
def lanes(olga: Any, own_clusters: Any, postmark: FakePostmark) -> Any:
    """`lanes("bulk", ...)` starts those clusters with the fake Postmark as the provider. Asking
    for `olga` first makes the clusters stop before the test database is flushed."""

    def start(*names: str) -> list[Any]:
        env = {"EMAIL_BACKEND": "anymail.backends.postmark.EmailBackend",
               "ANYMAIL_POSTMARK_SERVER_TOKEN": postmark.server_token,
               "ANYMAIL_POSTMARK_API_URL": postmark.url}
        return [own_clusters(name, env) for name in names]

    return start


def op_progress(page: Any) -> tuple[str, int]:
    """(status, done) as the progress page shows them now; it reloads itself every 2 s, so a
    read that meets a reload is tried again."""
    for _ in range(50):
        try:
            return (page.locator("#op-status").inner_text(timeout=2000),
                    int(page.locator("#op-done").inner_text(timeout=2000)))
        except PlaywrightError:
            time.sleep(0.1)
    raise AssertionError("the progress page did not show its status")


def test_an_operator_requeues_one_group_at_a_pace_and_sees_it_sent(
    page: Any, login: Any, olga: Any, lanes: Any, postmark: FakePostmark,
) -> None:
    retried = [seed.dead_letter(to=f"r{n}@example.com", error=TRY_LATER) for n in range(6)]
    refused = [seed.dead_letter(to=f"u{n}@oldmail.example.com", error=NO_MAILBOX, code="550",
                                reason=DeadReason.PERMANENT_ERROR) for n in range(3)]
    lanes("bulk", "transactional")
    login(page, olga)

    page.goto(GROUPS)
    groups = page.locator("#result_list tbody tr")
    expect(groups).to_have_count(2)
    expect(groups.nth(0)).to_contain_text("Out of attempts · 451 · example.com")
    expect(groups.nth(0).locator("td").nth(1)).to_have_text("6")
    expect(groups.nth(1)).to_contain_text("Permanent error · 550 · oldmail.example.com")
    expect(groups.nth(1).locator("td").nth(1)).to_have_text("3")

    # Into the group of 6: the list filtered by its signature, then everything matching it.
    groups.nth(0).locator("td").first.locator("a").click()
    expect(page.locator("#result_list tbody tr")).to_have_count(6)
    page.click("text=Requeue all matching…")

    expect(page.locator("#dlq-preview td.lane-transactional")).to_have_text("6")
    page.fill("#id_reason", "relay fixed: try the 451s again")
    page.fill("#id_pace", "2")
    page.click("input[type=submit][value='Requeue 6 dead letter(s)']")

    # Progress: 2 a second, so the first page cannot show all 6 done; it refreshes itself.
    expect(page.locator("#op-total")).to_have_text("6")
    seen = [op_progress(page)]
    assert seen[0][1] < 6, seen
    deadline = time.monotonic() + 40
    while seen[-1][0] != "Done" and time.monotonic() < deadline:
        time.sleep(0.3)
        seen.append(op_progress(page))
    assert seen[-1] == ("Done", 6), seen
    done = [d for _, d in seen]
    assert done == sorted(done), seen  # it only went forward
    expect(page.locator("input[value='Cancel operation']")).to_have_count(0)

    pks = [m.pk for m in retried]
    wait_until(lambda: Message.objects.filter(pk__in=pks, status=Status.SENT).count() == 6, 30,
               "the requeued group to be sent")
    # Exactly those six reached the provider, once each; the other group is still dead.
    accepted = postmark.accepted
    assert sorted(int(r.headers["X-Notification-Id"]) for r in accepted) == sorted(pks)
    by_message_id = postmark.count_accepted_by_message_id()
    assert [by_message_id[message_id_for(pk)] for pk in pks] == [1] * 6
    assert len(postmark.requests) == 6
    assert set(Message.objects.filter(pk__in=[m.pk for m in refused])
               .values_list("status", flat=True)) == {Status.DEAD}
    # The pace held: three chunks of two, a second apart (at full speed all six go at once).
    times = sorted(r.time for r in accepted)
    assert times[-1] - times[0] >= 1.5, times

    operation = Operation.objects.get()
    assert (operation.status, operation.done, operation.pace) == (OperationStatus.DONE, 6, 2.0)
    started, ended = AuditEntry.objects.filter(action=AuditAction.REQUEUE).order_by("id")
    assert (started.username, started.count, started.reason) == (
        "olga", 6, "relay fixed: try the 451s again")
    assert started.filter["signature"] == retried[0].failure_signature
    assert started.filter["pace"] == 2.0
    assert (ended.count, ended.filter["status"]) == (6, "done")


def test_an_operator_cancels_a_slow_operation_halfway(
    page: Any, login: Any, olga: Any, lanes: Any,
) -> None:
    pks = [seed.dead_letter(to=f"c{n}@example.com").pk for n in range(20)]
    lanes("bulk")  # the task's cluster; what it requeues stays pending (no sender running)
    login(page, olga)

    page.goto(DLQ)
    page.click("text=Requeue all matching…")
    page.fill("#id_reason", "one a second, watch it")
    page.fill("#id_pace", "1")
    page.click("input[type=submit][value='Requeue 20 dead letter(s)']")
    expect(page.locator("#op-total")).to_have_text("20")

    wait_until(lambda: Operation.objects.get().done >= 2, 30, "the operation to get going")
    page.reload()
    page.click("input[value='Cancel operation']")

    expect(page.locator("ul.messagelist")).to_contain_text("cancel requested")
    expect(page.locator("#op-status")).to_have_text("Cancelled", timeout=15_000)
    expect(page.locator("input[value='Cancel operation']")).to_have_count(0)

    operation = Operation.objects.get()
    assert operation.status == OperationStatus.CANCELLED
    assert 2 <= operation.done < 20, operation.done
    expect(page.locator("#op-done")).to_have_text(str(operation.done))
    time.sleep(1.5)  # longer than a chunk and its pace: nothing moves after the end
    statuses = list(Message.objects.filter(pk__in=pks).values_list("status", flat=True))
    assert statuses.count(Status.PENDING) == operation.done
    assert statuses.count(Status.DEAD) == 20 - operation.done
    cancel = AuditEntry.objects.get(action=AuditAction.OPERATION_CANCEL)
    assert cancel.username == "olga" and cancel.filter["operation"] == operation.pk
    ended = AuditEntry.objects.filter(action=AuditAction.REQUEUE).order_by("id").last()
    assert ended is not None and ended.filter["status"] == "cancelled"
    assert ended.count == operation.done
    assert re.search(r"cancelled$", ended.target), ended.target


def test_an_operator_retries_a_failed_operation_and_it_goes_on_from_where_it_stopped(
    page: Any, login: Any, olga: Any, lanes: Any, postmark: FakePostmark, settings: Any,
) -> None:
    from dlq import operations
    from dlq.operations import operation_create, operation_run
    from dlq.selectors import DeadLetterFilter

    pks = [seed.dead_letter(to=f"f{n}@example.com").pk for n in range(6)]
    operation = operation_create(kind="requeue", flt=DeadLetterFilter(), reason="relay fixed",
                                 user=olga)
    # Its task fails on the second chunk of two (the chunk rolls back), as a worker would see a
    # database error; the first chunk stays committed.
    settings.NOTIFY_DLQ = {**settings.NOTIFY_DLQ, "CHUNK_SIZE": 2}
    real = operations.dead_letters_requeue
    calls: list[list[int]] = []

    def fails_once(**kwargs: Any) -> Any:
        calls.append(kwargs["pks"])
        if len(calls) == 2:
            raise RuntimeError("the database went away")
        return real(**kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(operations, "dead_letters_requeue", fails_once)
        failed = operation_run(operation.pk, budget=60, requeue_self=False)
    assert failed is not None and (failed.status, failed.done) == (OperationStatus.FAILED, 2)

    lanes("bulk", "transactional")
    login(page, olga)
    page.goto(f"/admin/dlq/deadletter/operations/{operation.pk}/")
    expect(page.locator("#op-status")).to_have_text("Failed")
    expect(page.locator("#op-error")).to_contain_text("the database went away")
    expect(page.locator("#op-cursor")).to_contain_text(f"message #{pks[1]}")
    page.click("input[value='Retry from where it stopped']")

    expect(page.locator("ul.messagelist")).to_contain_text(f"after message #{pks[1]}")
    expect(page.locator("#op-status")).to_have_text("Done", timeout=30_000)
    expect(page.locator("#op-done")).to_have_text("6")
    expect(page.locator("input[value='Retry from where it stopped']")).to_have_count(0)

    wait_until(lambda: Message.objects.filter(pk__in=pks, status=Status.SENT).count() == 6, 30,
               "the six to be sent")
    by_message_id = postmark.count_accepted_by_message_id()
    assert [by_message_id[message_id_for(pk)] for pk in pks] == [1] * 6
    retry = AuditEntry.objects.get(action=AuditAction.OPERATION_RETRY)
    assert retry.username == "olga" and "the database went away" in retry.reason
    assert retry.count == 2 and retry.filter["cursor"] == pks[1]
    ended = AuditEntry.objects.filter(action=AuditAction.REQUEUE).order_by("id").last()
    assert ended is not None and (ended.count, ended.filter["status"]) == (6, "done")
