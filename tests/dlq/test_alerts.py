from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from django.utils import timezone

from dlq import alerts
from dlq.alerts import alerts_check, ensure_alert_schedule
from dlq.models import AlertState
from notifications.models import LaneState, Message
from tests.dlq.helpers import dead_message


@pytest.fixture
def webhook() -> Any:
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()


@pytest.fixture
def alert_settings(settings: Any, outbox: list[Any], webhook: Any) -> Any:
    settings.NOTIFY_ALERTS = {**settings.NOTIFY_ALERTS, "DLQ_SIZE": 1, "OLDEST_DUE_SECONDS": 60,
                              "HEARTBEAT_SECONDS": 60, "EMAILS": ["ops@example.com"],
                              "WEBHOOK_URL": webhook[0], "WEBHOOK_TIMEOUT": 2}
    LaneState.objects.update(heartbeat_at=timezone.now())
    return settings


@pytest.mark.usefixtures("demo", "no_wakeups", "alert_settings")
def test_one_alert_per_condition_until_it_clears(outbox: list[Any], webhook: Any) -> None:
    first, second = dead_message("a@example.com"), dead_message("b@example.com")

    assert alerts_check() == ["FIRING dlq_size"]
    assert alerts_check() == []  # still firing: no second alert
    assert [m.subject for m in outbox] == ["[notifications] ALERT dlq_size"]
    assert outbox[0].to == ["ops@example.com"]
    assert webhook[1][0]["alert"] == "dlq_size" and webhook[1][0]["state"] == "firing"

    Message.objects.filter(pk__in=[first.pk, second.pk]).delete()
    assert alerts_check() == ["RESOLVED dlq_size"]
    assert outbox[-1].subject == "[notifications] RESOLVED dlq_size"
    assert [w["state"] for w in webhook[1]] == ["firing", "resolved"]
    assert not AlertState.objects.exists()


@pytest.mark.usefixtures("demo", "no_wakeups", "alert_settings")
def test_oldest_due_and_heartbeat_per_lane_and_not_while_paused() -> None:
    from notifications.services import notify
    message = notify(event="marketing.newsletter", to="a@example.com",
                     data={"headline": "h", "body": "b"})
    Message.objects.filter(pk=message.pk).update(
        next_attempt_at=timezone.now() - timedelta(minutes=5))
    LaneState.objects.filter(lane="transactional").update(
        heartbeat_at=timezone.now() - timedelta(minutes=5))

    assert sorted(alerts_check()) == ["FIRING heartbeat:transactional", "FIRING oldest_due:bulk"]

    LaneState.objects.filter(lane="bulk").update(paused=True)
    LaneState.objects.filter(lane="transactional").update(heartbeat_at=timezone.now())
    assert sorted(alerts_check()) == ["RESOLVED heartbeat:transactional",
                                      "RESOLVED oldest_due:bulk"]


@pytest.mark.usefixtures("demo", "no_wakeups")
def test_a_failing_webhook_is_logged_not_raised(settings: Any, outbox: list[Any],
                                                caplog: Any, monkeypatch: Any) -> None:
    settings.NOTIFY_ALERTS = {**settings.NOTIFY_ALERTS, "DLQ_SIZE": 0, "OLDEST_DUE_SECONDS": 0,
                              "HEARTBEAT_SECONDS": 60, "EMAILS": [],
                              "WEBHOOK_URL": "http://127.0.0.1:9/nothing", "WEBHOOK_TIMEOUT": 1}
    LaneState.objects.update(heartbeat_at=None)
    monkeypatch.setattr(alerts, "_CHECKER_STARTED", time.monotonic())
    assert alerts_check() == []  # a checker just started: the clusters may not have beaten yet
    monkeypatch.setattr(alerts, "_CHECKER_STARTED", time.monotonic() - 61)

    assert sorted(alerts_check()) == ["FIRING heartbeat:bulk", "FIRING heartbeat:transactional"]
    assert "could not POST alert" in caplog.text
    assert outbox == []


@pytest.mark.django_db
def test_the_schedule_is_created_once_on_the_dlq_cluster() -> None:
    from django_q.models import Schedule

    ensure_alert_schedule()
    ensure_alert_schedule()

    schedule = Schedule.objects.get(name="dlq-minute-check")
    assert (schedule.func, schedule.minutes, schedule.cluster) == (
        "dlq.tasks.minute_check", 1, "bulk")
