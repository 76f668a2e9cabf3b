"""The operator dashboard: its numbers are the database's, its chart has the rollup's points,
pause/resume work for operators only, and a real drain writes the rollup it reads."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from notifications import transitions
from notifications.clusters import WorkerIdentity, worker_beat
from notifications.dashboard import CHART_HEIGHT, CHART_STEP
from notifications.delivery import claim_batch, drain_lane
from notifications.models import (
    AuditEntry,
    DeadReason,
    LaneMinute,
    LaneState,
    Message,
    Status,
)
from notifications.rollup import minute_of, rollup_add
from notifications.services import notify
from tests.factories import staff
from tests.fakes.postmark import FakePostmark

ORDER = {"order_id": 1, "total": "1", "items": []}
NEWS = {"headline": "h", "body": "b"}

pytestmark = pytest.mark.usefixtures("demo", "no_wakeups")

DASHBOARD = "admin:notifications_message_dashboard"
DATA = "admin:notifications_message_dashboard_data"


@pytest.fixture
def operator() -> User:
    return staff("olga", "operators")


@pytest.fixture
def viewer() -> User:
    return staff("victor", "viewers")


@pytest.fixture
def ops(client: Client, operator: User) -> Client:
    client.force_login(operator)
    return client


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The dashboard's clock, fixed (a test must not straddle a minute boundary)."""
    now = timezone.now() + timedelta(seconds=5)  # after every row the test makes
    monkeypatch.setattr("notifications.dashboard.timezone.now", lambda: now)
    yield now


def order(to: str, **kw: Any) -> Message:
    return notify(event="order.placed", to=to, data=ORDER, **kw)


def test_it_shows_the_numbers_the_database_has(ops: Client, frozen: Any) -> None:
    dead = [order(f"d{i}@example.com") for i in range(2)]
    sent_one = order("s@example.com")
    retrying = [order(f"r{i}@example.com") for i in range(3)]
    claimed = {m.pk: m for m in claim_batch("transactional", 100)}
    for m in dead:
        transitions.kill([m.pk], token=claimed[m.pk].lease_token,
                         reason=DeadReason.MAX_ATTEMPTS, error="boom")
    transitions.mark_sent([sent_one.pk], token=claimed[sent_one.pk].lease_token,
                          provider="default")
    for m in retrying:
        transitions.release([m.pk], token=claimed[m.pk].lease_token, reason="test",
                            due=frozen - timedelta(minutes=2), refund=True)
    order("later@example.com", send_at=frozen + timedelta(minutes=10))
    order("p@example.com")
    notify(event="marketing.newsletter", to="n@example.com", data=NEWS)
    minute = minute_of(frozen)
    LaneMinute.objects.create(lane="transactional", minute=minute - timedelta(minutes=5),
                              sent=30, failed=6, dead=2)
    LaneMinute.objects.create(lane="transactional", minute=minute, sent=10, failed=0, dead=2)
    LaneMinute.objects.create(lane="transactional", minute=minute - timedelta(hours=3), dead=7)
    LaneMinute.objects.create(lane="transactional", minute=minute - timedelta(days=2), dead=99)

    data = ops.get(reverse(DATA)).json()

    lane = data["lanes"]["transactional"]
    t = Message.objects.filter(lane="transactional")
    waiting = t.filter(status__in=(Status.PENDING, Status.RETRY))
    assert lane["by_status"]["pending"]["value"] == t.filter(status=Status.PENDING).count() == 2
    assert lane["by_status"]["retry"]["value"] == t.filter(status=Status.RETRY).count() == 3
    assert lane["by_status"]["processing"]["value"] == 0
    assert lane["by_status"]["sent"] == {"value": 1, "exact": True, "text": "1"}
    assert lane["dlq"] == t.filter(status=Status.DEAD).count() == 2
    assert lane["depth"] == waiting.count() == 5
    assert lane["due"] == waiting.filter(next_attempt_at__lte=frozen).count() == 4
    assert lane["oldest_due_age_seconds"] == 120.0
    assert (lane["sent_last_hour"], lane["failed_last_hour"], lane["dead_last_hour"]) == (40, 6, 4)
    assert lane["dead_last_day"] == 11  # the hour's 4 and 3 hours ago's 7, not 2 days ago's
    assert lane["failure_rate"] == pytest.approx(10 / 50)
    assert data["lanes"]["bulk"]["by_status"]["pending"]["value"] == 1
    assert data["lanes"]["bulk"]["sent_last_hour"] == 0
    assert [p["name"] for p in data["providers"]] == ["default"]
    assert data["providers"][0]["state"] == "closed"

    page = ops.get(reverse(DASHBOARD)).content.decode()
    assert 'data-k="lanes.transactional.dlq">2<' in page
    assert 'data-k="lanes.transactional.due">4<' in page
    assert 'data-k="lanes.transactional.sent_last_hour">40<' in page
    assert 'data-k="lanes.transactional.failure_rate" data-format="percent">20%<' in page


def test_the_chart_has_the_rollup_points(ops: Client, frozen: Any) -> None:
    minute = minute_of(frozen)
    LaneMinute.objects.create(lane="bulk", minute=minute, sent=50, failed=5, dead=5)
    LaneMinute.objects.create(lane="bulk", minute=minute - timedelta(minutes=30), sent=25)
    LaneMinute.objects.create(lane="bulk", minute=minute - timedelta(minutes=60), sent=999)  # out

    page = ops.get(reverse(DASHBOARD)).content.decode()

    svg = re.search(r'<svg[^>]*data-lane="bulk".*?</svg>', page, re.S).group(0)
    sent = re.search(r'class="sent"[^>]*points="([^"]*)"', svg).group(1).split()
    failed = re.search(r'class="failed"[^>]*points="([^"]*)"', svg).group(1).split()
    assert len(sent) == len(failed) == 60
    assert sent[-1] == f"{59 * CHART_STEP},0"  # 50 is the top
    assert sent[29] == f"{29 * CHART_STEP},{CHART_HEIGHT // 2}"  # 25: half-way
    assert sent[0] == f"0,{CHART_HEIGHT}"  # an hour ago's 999 is out of the window
    assert failed[-1] == f"{59 * CHART_STEP},{CHART_HEIGHT - 10 * CHART_HEIGHT / 50:g}"
    assert 'data-top="50"' in svg
    assert "cdn" not in page.lower() and "<script src" not in page.split("<svg")[0][-2000:]


def test_a_lanes_figures_are_the_sum_over_its_providers(ops: Client, frozen: Any) -> None:
    minute = minute_of(frozen)
    for provider, sent, failed, dead in (("primary", 30, 4, 1), ("secondary", 20, 1, 0),
                                         ("", 0, 0, 2)):  # "": dead without a provider
        LaneMinute.objects.create(lane="bulk", minute=minute, provider=provider, sent=sent,
                                  failed=failed, dead=dead)

    bulk = ops.get(reverse(DATA)).json()["lanes"]["bulk"]

    assert (bulk["sent_last_hour"], bulk["failed_last_hour"], bulk["dead_last_hour"],
            bulk["dead_last_day"]) == (50, 5, 3, 3)
    assert 'data-top="50"' in bulk["chart"]


def test_the_json_chart_is_the_pages_chart(ops: Client, frozen: Any) -> None:
    LaneMinute.objects.create(lane="transactional", minute=minute_of(frozen), sent=3)
    page = ops.get(reverse(DASHBOARD)).content.decode()
    data = ops.get(reverse(DATA)).json()
    assert data["lanes"]["transactional"]["chart"] in page


def test_an_operator_pauses_and_resumes_a_lane_from_the_page(ops: Client) -> None:
    page = ops.get(reverse(DASHBOARD)).content.decode()
    assert 'value="Pause bulk"' in page

    response = ops.post(reverse("admin:notifications_message_lane_pause", args=["bulk"]),
                        {"reason": "provider incident"}, follow=True)

    assert "Paused lane bulk." in response.content.decode()
    state = LaneState.objects.get(lane="bulk")
    assert (state.paused, state.paused_by, state.pause_reason) == (True, "olga",
                                                                   "provider incident")
    data = ops.get(reverse(DATA)).json()
    assert data["lanes"]["bulk"]["paused"] is True
    assert data["lanes"]["bulk"]["pause_reason"] == "provider incident"
    assert data["lanes"]["transactional"]["paused"] is False

    ops.post(reverse("admin:notifications_message_lane_resume", args=["bulk"]), {"reason": ""})

    assert LaneState.objects.get(lane="bulk").paused is False
    assert list(AuditEntry.objects.order_by("id").values_list("action", "username", "target")) \
        == [("pause", "olga", "lane bulk"), ("resume", "olga", "lane bulk")]


def test_a_pause_needs_a_reason_and_a_known_lane(ops: Client) -> None:
    response = ops.post(reverse("admin:notifications_message_lane_pause", args=["bulk"]),
                        {"reason": "  "}, follow=True)
    assert "Give a reason" in response.content.decode()
    response = ops.post(reverse("admin:notifications_message_lane_pause", args=["nope"]),
                        {"reason": "x"}, follow=True)
    assert response.status_code == 200
    assert "Unknown lane &#x27;nope&#x27;; lanes: transactional, bulk" in \
        response.content.decode()
    assert ops.get(reverse("admin:notifications_message_lane_pause", args=["bulk"])) \
        .status_code == 405
    assert not LaneState.objects.filter(paused=True).exists()
    assert not AuditEntry.objects.exists()


def test_a_viewer_sees_the_dashboard_but_cannot_pause(client: Client, viewer: User) -> None:
    client.force_login(viewer)
    page = client.get(reverse(DASHBOARD))
    assert page.status_code == 200 and "Pause bulk" not in page.content.decode()
    assert client.get(reverse(DATA)).status_code == 200
    for name in ("admin:notifications_message_lane_pause",
                 "admin:notifications_message_lane_resume"):
        url = reverse(name, args=["bulk"])
        assert client.get(url).status_code == 403
        assert client.post(url, {"reason": "x"}).status_code == 403
    assert not LaneState.objects.filter(paused=True).exists()


def test_the_pause_form_needs_its_csrf_token(operator: User) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    url = reverse("admin:notifications_message_lane_pause", args=["bulk"])
    assert client.post(url, {"reason": "x"}).status_code == 403
    assert LaneState.objects.get(lane="bulk").paused is False

    page = client.get(reverse(DASHBOARD)).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    client.post(url, {"reason": "x", "csrfmiddlewaretoken": token})
    assert LaneState.objects.get(lane="bulk").paused is True


def test_the_admin_index_leads_to_the_dashboard(ops: Client) -> None:
    index = ops.get(reverse("admin:index")).content.decode()
    assert reverse(DASHBOARD) in index
    changelist = ops.get(reverse("admin:notifications_message_changelist")).content.decode()
    assert reverse(DASHBOARD) in changelist


def test_lanes_are_judged_by_their_heartbeat(ops: Client, frozen: Any) -> None:
    LaneState.objects.filter(lane="transactional").update(heartbeat_at=frozen
                                                          - timedelta(seconds=20))
    LaneState.objects.filter(lane="bulk").update(heartbeat_at=frozen - timedelta(hours=1))

    clusters = {c["name"]: c for c in ops.get(reverse(DATA)).json()["clusters"]}

    assert clusters["transactional"]["up"] is True
    assert clusters["transactional"]["last_seen_age_seconds"] == 20.0
    assert clusters["transactional"]["source"] == "heartbeat"
    assert clusters["transactional"]["workers"] is None  # no cluster beat: unknown, not 0
    assert clusters["bulk"]["up"] is False


def test_each_cluster_on_a_lane_is_listed_with_its_live_workers(
    ops: Client, frozen: Any, settings: Any,
) -> None:
    """Two bulk clusters on one host: two rows, each with the workers that beat (with the ORM
    broker django-q2's Stat is out of sight, and the lane heartbeat cannot tell them apart)."""
    settings.NOTIFY = {**settings.NOTIFY, "CLUSTER_BEAT_SECONDS": 10}
    LaneState.objects.update(heartbeat_at=frozen - timedelta(seconds=5))
    beat = frozen - timedelta(seconds=4)
    for pid, cluster_pid, at in ((11, 10, beat), (12, 10, beat), (13, 10, beat),
                                 (21, 20, beat), (22, 20, frozen - timedelta(seconds=40)),
                                 (31, 30, frozen - timedelta(minutes=5))):
        worker_beat(WorkerIdentity(host="web1", pid=pid, cluster_pid=cluster_pid, parent_pid=1,
                                   cluster="bulk", workers=3 if cluster_pid == 10 else 2,
                                   started_at=frozen - timedelta(hours=1)), now=at)

    data = ops.get(reverse(DATA)).json()["clusters"]
    page = ops.get(reverse(DASHBOARD)).content.decode()

    bulk = [(c["name"], c["state"], c["workers"], c["configured_workers"])
            for c in data if c["lane"] == "bulk"]
    assert bulk == [("bulk", "up", 4, None),
                    ("bulk on web1 (pid 10)", "up", 3, 3),
                    ("bulk on web1 (pid 20)", "up", 1, 2),
                    ("bulk on web1 (pid 30)", "down", 0, 2)]
    assert [c["source"] for c in data if c["lane"] == "bulk"] == [
        "heartbeat", "worker beats", "worker beats", "worker beats"]
    assert "1 of 2" in page and "bulk on web1 (pid 30)" in page
    assert "not beating" in page


def test_the_dashboard_never_counts_the_whole_table(ops: Client) -> None:
    """A small version of bench/console.py: with sent history above the estimate threshold,
    every COUNT the page runs is limited to unfinished/dead rows or capped."""
    seed(20_000)
    with CaptureQueriesContext(connection) as queries:
        data = ops.get(reverse(DATA)).json()
        ops.get(reverse(DASHBOARD))
    assert_no_full_count(queries)
    sent = data["lanes"]["bulk"]["by_status"]["sent"]
    assert sent["exact"] is False and sent["value"] > 10_000
    assert data["lanes"]["bulk"]["by_status"]["pending"] == {
        "value": 500, "exact": True, "text": "500"}


def seed(n: int) -> None:
    """n bulk messages, all sent but 500 pending, in one INSERT ... SELECT."""
    template = Message.objects.get(pk=notify(event="marketing.newsletter", to="x@example.com",
                                             data=NEWS).pk)
    Message.objects.all().delete()
    table = Message._meta.db_table
    cols = ("event_type_id", "producer_id", "payload_hash", "to_email", "to_name", "locale",
            "data", "template_version_id", "lane", "priority", "status", "attempts",
            "max_attempts", "next_attempt_at", "last_error", "dead_reason",
            "provider_message_id", "provider", "failure_signature", "created_at",
            "updated_at")
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < %s) "
            f"INSERT INTO {table} ({', '.join(cols)}) SELECT %s, %s, '', 'r' || i || "
            f"'@example.com', '', 'en', '{{}}', %s, 'bulk', 9, "
            f"CASE WHEN i <= 500 THEN 'pending' ELSE 'sent' END, 1, 3, %s, '', '', '', '', "
            f"'', %s, %s FROM s",
            [n, template.event_type_id, template.producer_id, template.template_version_id,
             now, now, now])
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {table}")


def assert_no_full_count(queries: CaptureQueriesContext) -> None:
    table = Message._meta.db_table
    counts = [q for q in queries.captured_queries
              if "COUNT(" in q["sql"].upper() and table in q["sql"]]
    assert counts  # the page does count: each count must be a cheap one
    for q in counts:
        sql = q["sql"]
        if "COUNT(" not in sql.upper() or table not in sql:
            continue
        limited = re.search(r"\bLIMIT\b", sql, re.I)
        by_status = re.search(r"\"status\" IN \('pending', 'retry'|\"status\" IN "
                              r"\('pending', 'retry', 'processing', 'dead'\)", sql)
        dead_only = '"status" = \'dead\'' in sql
        assert limited or by_status or dead_only, f"a full COUNT: {sql}"


def test_a_real_drain_writes_the_rollup(postmark: FakePostmark, ops: Client) -> None:
    postmark.script("refused@example.com", ["422"])
    postmark.script("flaky@example.com", ["503"])  # fails once, then is accepted
    for to in ("a@example.com", "b@example.com", "refused@example.com", "flaky@example.com"):
        order(to)

    report = drain_lane("transactional", budget=5.0)

    assert (report.sent, report.retried, report.dead) == (3, 1, 1)
    rows = LaneMinute.objects.filter(lane="transactional")  # a minute may turn meanwhile
    assert [sum(r.sent for r in rows), sum(r.failed for r in rows),
            sum(r.dead for r in rows)] == [3, 1, 1]
    assert all(r.minute == minute_of(r.minute) for r in rows)
    assert not LaneMinute.objects.filter(lane="bulk").exists()
    data = ops.get(reverse(DATA)).json()["lanes"]["transactional"]
    assert (data["sent_last_hour"], data["failed_last_hour"], data["dead_last_hour"],
            data["dlq"]) == (3, 1, 1, 1)


def test_rollup_adds_to_the_minute_row() -> None:
    at = timezone.now()
    rollup_add(lane="bulk", at=at, sent=3, failed=1)
    rollup_add(lane="bulk", at=at.replace(second=59), sent=2, dead=4)
    rollup_add(lane="bulk", at=at, sent=0)  # nothing: no write
    rollup_add(lane="transactional", at=at, sent=1)
    rows = {r.lane: (r.sent, r.failed, r.dead) for r in LaneMinute.objects.all()}
    assert rows == {"bulk": (5, 1, 4), "transactional": (1, 0, 0)}


def test_rollup_keeps_a_row_per_provider() -> None:
    at = timezone.now()
    rollup_add(lane="bulk", at=at, provider="primary", sent=3, failed=1)
    rollup_add(lane="bulk", at=at, provider="secondary", sent=2)
    rollup_add(lane="bulk", at=at, provider="primary", sent=4, dead=1)
    rollup_add(lane="bulk", at=at, dead=2)  # no provider (the sweeper's expired leases)
    rows = {r.provider: (r.sent, r.failed, r.dead) for r in LaneMinute.objects.all()}
    assert rows == {"primary": (7, 1, 1), "secondary": (2, 0, 0), "": (0, 0, 2)}
