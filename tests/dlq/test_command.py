from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from dlq.models import Operation, OperationStatus
from notifications.models import AuditAction, AuditEntry, DeadReason, Message, Status
from tests.dlq.helpers import dead_message

pytestmark = pytest.mark.usefixtures("demo", "no_wakeups")


def run(*args: str) -> str:
    out = StringIO()
    call_command("dlq", *args, stdout=out)
    return out.getvalue()


def test_list_and_groups_take_the_filters() -> None:
    dead_message("ann@example.com")
    dead_message("bob@other.org", reason=DeadReason.PERMANENT_ERROR)

    listing = run("list", "--dead-reason", "permanent_error")
    assert "bob@other.org" in listing and "ann@example.com" not in listing
    groups = run("groups").splitlines()
    assert len(groups) == 2 and all(" 1 " in line for line in groups)


def test_requeue_is_a_dry_run_unless_yes() -> None:
    dead = dead_message()

    out = run("requeue", "--domain", "example.com")

    assert "lane transactional: 1" in out and "dry run: nothing changed" in out
    assert Message.objects.get(pk=dead.pk).status == Status.DEAD
    assert not Operation.objects.exists()


def test_acting_needs_a_reason_and_runs_an_audited_operation() -> None:
    dead = dead_message()
    with pytest.raises(CommandError, match="--reason: say why"):
        run("discard", "--yes")

    out = run("discard", "--yes", "--reason", "bad list", "--pace", "100")

    assert "done, 1 of 1 done" in out
    assert Message.objects.get(pk=dead.pk).status == Status.CANCELLED
    operation = Operation.objects.get()
    assert (operation.status, operation.pace) == (OperationStatus.DONE, 100.0)
    assert list(AuditEntry.objects.values_list("action", "count", "reason")) == [
        (AuditAction.DISCARD, 1, "bad list"), (AuditAction.DISCARD, 1, "bad list")]


@pytest.mark.parametrize(("args", "error"), [
    (["list", "--dead-reason", "nope"], "--dead-reason: 'nope' is not one of"),
    (["list", "--lane", "fast"], "--lane: 'fast'"),
    (["requeue", "--since", "soon"], "--since: 'soon' is not a date"),
    (["requeue", "--ids", "1,x"], "--ids: must be message ids"),
    (["requeue", "--yes", "--reason", "r", "--pace", "0"], "--pace:"),
    (["list", "--limit", "0"], "--limit must be at least 1"),
    (["resume", "999"], "no operation 999"),
])
def test_bad_input_is_a_command_error(args: list[str], error: str) -> None:
    with pytest.raises(CommandError, match=error):
        run(*args)


def test_backfill_signatures(settings: Any) -> None:
    dead = dead_message()
    Message.objects.filter(pk=dead.pk).update(failure_signature="")
    assert run("backfill-signatures").strip() == "signed 1 dead letter(s)"
    assert Message.objects.get(pk=dead.pk).failure_signature == dead.failure_signature
