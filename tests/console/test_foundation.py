"""The console's foundation: the audit log is append-only, the roles exist, and a paused lane's
drains claim nothing until it is resumed."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group, User

from notifications.delivery import drain_lane
from notifications.lanes import lane_is_paused, lane_pause, lane_resume
from notifications.models import AuditAction, AuditEntry, LaneState, Message, Status
from notifications.services import notify
from notifications.sweeper import sweep_lane

ORDER = {"order_id": 1, "total": "1", "items": []}


@pytest.mark.django_db
def test_the_audit_log_is_append_only() -> None:
    from notifications.audit import audit_record

    entry = audit_record(user="shell", action=AuditAction.PAUSE, target="lane bulk", reason="x")
    with pytest.raises(TypeError):
        entry.save()
    with pytest.raises(TypeError):
        entry.delete()
    with pytest.raises(TypeError):
        AuditEntry.objects.all().delete()
    with pytest.raises(TypeError):
        AuditEntry.objects.update(reason="rewritten")
    assert AuditEntry.objects.get().reason == "x"


@pytest.mark.django_db
def test_the_roles_exist_and_only_operators_may_act() -> None:
    operators = {p.codename for p in Group.objects.get(name="operators").permissions.all()}
    viewers = {p.codename for p in Group.objects.get(name="viewers").permissions.all()}
    acts = {"requeue_deadletter", "discard_deadletter", "cancel_message", "pause_lane",
            "activate_templateversion", "add_templateversion"}
    assert acts <= operators
    assert not acts & viewers
    assert {"view_message", "view_deadletter", "view_auditentry", "view_templateversion"} <= viewers
    assert all(p.startswith("view_") for p in viewers)


@pytest.mark.usefixtures("demo")
def test_a_paused_lane_claims_nothing_and_resume_wakes_it(
    outbox: list[Any], no_wakeups: list[str], django_capture_on_commit_callbacks: Any,
) -> None:
    ops = User.objects.create_user("olga")
    assert lane_pause(lane="transactional", user=ops, reason="provider incident")
    assert not lane_pause(lane="transactional", user=ops)  # already paused: nothing to record
    message = notify(event="order.placed", to="ann@example.com", data=ORDER)
    no_wakeups.clear()

    report = drain_lane("transactional", budget=2.0)
    sweep_lane("transactional")

    message.refresh_from_db()
    assert (report.paused, report.claimed, message.status) == (True, 0, Status.PENDING)
    assert no_wakeups == []  # neither the drain nor the sweeper woke a paused lane
    state = LaneState.objects.get(lane="transactional")
    assert (state.paused, state.paused_by, state.pause_reason) == (True, "olga",
                                                                   "provider incident")

    with django_capture_on_commit_callbacks(execute=True):
        assert lane_resume(lane="transactional", user=ops)
    assert no_wakeups == ["transactional"] and not lane_is_paused("transactional")
    drain_lane("transactional", budget=2.0)
    assert Message.objects.get(pk=message.pk).status == Status.SENT
    assert list(AuditEntry.objects.order_by("id").values_list("action", "username", "target")) == [
        ("pause", "olga", "lane transactional"), ("resume", "olga", "lane transactional")]


@pytest.mark.django_db
def test_pausing_an_unknown_lane_says_which_lanes_exist() -> None:
    with pytest.raises(ValueError, match="unknown lane 'newsletters'; lanes: transactional, bulk"):
        lane_pause(lane="newsletters", user=None)


def test_csv_export_neutralises_formulas_and_streams() -> None:
    from notifications.exports import csv_response

    response = csv_response("x.csv", ["id", "subject"],
                            iter([(1, "=HYPERLINK(\"http://evil\")"), (2, "plain"), (3, None)]))
    body = b"".join(response.streaming_content).decode()
    assert body.splitlines() == ["id,subject", "1,\"'=HYPERLINK(\"\"http://evil\"\")\"",
                                 "2,plain", "3,"]
    assert response["Content-Disposition"] == 'attachment; filename="x.csv"'
