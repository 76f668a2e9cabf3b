"""The dashboard in a real browser: its numbers are the database's, it refreshes itself, and an
operator pauses and resumes a lane from it (a viewer sees no buttons)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from notifications.delivery import drain_lane
from notifications.models import AuditEntry, ClusterWorker, LaneState, Message, Status
from notifications.rollup import rollup_add
from notifications.services import notify
from tests.browser import seed

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("demo")]

DASHBOARD = "/admin/notifications/message/dashboard/"


def cell(page: Any, key: str) -> str:
    return page.locator(f"[data-k='{key}']").first.inner_text().strip()


def test_the_dashboard_shows_the_databases_numbers_and_refreshes(
    page: Any, login: Any, olga: Any, no_wakeups: list[str], outbox: list[Any],
) -> None:
    for n in range(3):
        notify(event="order.placed", to=f"sent{n}@example.com", data=seed.ORDER)
    drain_lane("transactional", budget=5.0)  # to the locmem outbox: 3 sent, rollup written
    for n in range(2):
        seed.dead_letter(to=f"dead{n}@example.com")
    seed.retrying(to="later@example.com", error="smtplib.SMTPServerDisconnected: timed out")
    for n in range(4):
        notify(event="order.placed", to=f"wait{n}@example.com", data=seed.ORDER)
    rollup_add(lane="transactional", at=timezone.now() - timedelta(minutes=5), sent=40, failed=2)
    login(page, olga)

    page.goto(DASHBOARD)

    tx = Message.objects.filter(lane="transactional")
    expected = {status: tx.filter(status=status).count()
                for status in ("pending", "retry", "processing", "dead", "sent")}
    assert expected == {"pending": 4, "retry": 1, "processing": 0, "dead": 2, "sent": 3}
    for status, count in expected.items():
        assert cell(page, f"lanes.transactional.by_status.{status}") == str(count), status
    assert cell(page, "lanes.transactional.depth") == "5"
    assert cell(page, "lanes.transactional.dlq") == "2"
    # The rollup: the drain's 3 sends and the 40 written five minutes ago.
    assert cell(page, "lanes.transactional.sent_last_hour") == "43"
    assert page.locator("#lane-transactional svg polyline").count() >= 1

    # It refreshes itself: a new message, and a cluster that starts, show up without a reload.
    notify(event="order.placed", to="late@example.com", data=seed.ORDER)
    now = timezone.now()
    ClusterWorker.objects.create(host="worker-host-7", pid=4242, cluster_pid=4241,
                                 cluster="bulk", workers=2, started_at=now, beat_at=now)
    expect(page.locator("[data-k='lanes.transactional.by_status.pending']").first).to_have_text(
        "5", timeout=15_000)
    expect(page.locator("#clusters tbody")).to_contain_text("worker-host-7", timeout=15_000)
    expect(page.locator("#clusters tbody tr", has_text="worker-host-7")).to_contain_text(
        "1 of 2")
    page.goto("about:blank")  # stop the refresh before the test's database is flushed


def test_an_operator_pauses_and_resumes_a_lane_and_a_viewer_cannot(
    page: Any, login: Any, olga: Any, vic: Any, no_wakeups: list[str],
) -> None:
    login(page, olga)
    page.goto(DASHBOARD)
    lane = page.locator("#lane-bulk")
    lane.locator("form:visible input[name=reason]").fill("bounce storm")
    lane.locator("input[value='Pause bulk']").click()

    expect(page.locator("#lane-bulk .dash-paused")).to_contain_text("bounce storm")
    state = LaneState.objects.get(lane="bulk")
    assert (state.paused, state.paused_by, state.pause_reason) == (True, "olga", "bounce storm")

    page.locator("#lane-bulk input[value='Resume bulk']").click()
    expect(page.locator("#lane-bulk .dash-paused")).to_be_hidden()
    assert not LaneState.objects.get(lane="bulk").paused
    assert list(AuditEntry.objects.order_by("id").values_list("action", "username")) == [
        ("pause", "olga"), ("resume", "olga")]

    page.context.clear_cookies()
    login(page, vic)
    page.goto(DASHBOARD)
    expect(page.locator("[data-k='lanes.bulk.depth']").first).to_be_visible()
    assert page.locator("#lane-bulk form").count() == 0  # no pause or resume for a viewer
    assert Message.objects.filter(status=Status.PENDING).count() == 0
    page.goto("about:blank")  # stop the refresh before the test's database is flushed
