from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone
from rest_framework.test import APIClient

from notifications.models import LaneState, Message
from notifications.services import notify_many
from tests.api.conftest import event

NEWS = {"event": "marketing.newsletter", "to": "r@example.com",
        "data": {"headline": "h", "body": "b"}}


def fill(lane_event: dict[str, Any], n: int) -> None:
    notify_many([{**lane_event, "to": f"f{i}@example.com"} for i in range(n)])


def test_a_lane_past_its_high_water_mark_answers_429_and_accepts_nothing_for_it(
    api: APIClient, settings: Any,
) -> None:
    settings.NOTIFY_API = {**settings.NOTIFY_API, "HIGH_WATER": {"transactional": 50, "bulk": 5}}
    fill(NEWS, 6)

    refused = api.post("/api/v1/events/", NEWS, format="json")
    batch = api.post("/api/v1/events/batch/", {"events": [NEWS, event()]}, format="json")
    transactional = api.post("/api/v1/events/", event(), format="json")

    assert refused.status_code == 429
    assert refused["Retry-After"] == "30"
    assert refused.json()["error"]["code"] == "lane_full"
    assert batch.status_code == 429
    assert transactional.status_code == 202  # the bulk lane sheds; transactional still flows
    assert Message.objects.filter(lane="bulk").count() == 6


def test_the_depth_check_stops_counting_at_the_mark(api: APIClient, settings: Any,
                                                   django_assert_max_num_queries: Any) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    settings.NOTIFY_API = {**settings.NOTIFY_API, "HIGH_WATER": {"transactional": 3, "bulk": 3}}
    fill(event(), 10)
    with CaptureQueriesContext(connection) as queries:
        api.post("/api/v1/events/", event(), format="json")
    count = next(q["sql"] for q in queries if "COUNT(*)" in q["sql"])
    assert "LIMIT 4" in count


def test_a_producers_rate_limit_answers_429_with_retry_after(
    api: APIClient, producer: Any, monkeypatch: Any,
) -> None:
    producer.rate_limit_per_second = 3
    producer.save()
    clock = [1000.25]
    monkeypatch.setattr("notifications.api.throttling.time.time", lambda: clock[0])

    codes = [api.post("/api/v1/events/", event(), format="json").status_code for _ in range(5)]
    limited = api.post("/api/v1/events/", event(), format="json")
    clock[0] = 1001.1  # the next second: a fresh window
    later = api.post("/api/v1/events/", event(), format="json")

    assert codes == [202, 202, 202, 429, 429]
    assert limited["Retry-After"] == "1"
    assert limited.json()["error"]["code"] == "rate_limited"
    assert later.status_code == 202
    assert Message.objects.count() == 4


def test_health_says_the_process_and_database_are_up(client: Any, db: Any) -> None:
    response = client.get("/health/")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok"}}


def test_ready_reports_each_lanes_heartbeat_without_failing_on_it(client: Any,
                                                                  demo: None) -> None:
    LaneState.objects.update(heartbeat_at=None)
    stale = client.get("/health/ready/")
    assert stale.status_code == 200  # events are still accepted; they wait in the queue
    assert stale.json()["checks"]["lanes"]["bulk"]["cluster"] == "no recent heartbeat"

    LaneState.objects.update(heartbeat_at=timezone.now() - timedelta(seconds=5))
    ready = client.get("/health/ready/")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready"
    assert body["checks"]["lanes"]["bulk"]["cluster"] == "ok"
    assert set(body["checks"]["lanes"]) == {"transactional", "bulk"}
    assert "SECRET" not in ready.content.decode().upper()


def test_a_deep_bulk_lane_does_not_take_the_node_out_of_the_load_balancer(
    client: Any, demo: None, settings: Any, no_wakeups: Any,
) -> None:
    settings.NOTIFY_API = {**settings.NOTIFY_API, "HIGH_WATER": {"transactional": 50, "bulk": 2}}
    LaneState.objects.update(heartbeat_at=timezone.now())
    fill(NEWS, 3)
    response = client.get("/health/ready/")
    assert response.status_code == 200
    assert response.json()["checks"]["lanes"]["bulk"]["backlog"] == "over high-water mark"


def test_ready_is_503_when_the_database_does_not_answer(client: Any, db: Any,
                                                       monkeypatch: Any) -> None:
    monkeypatch.setattr("project.health._database_ok", lambda: False)
    response = client.get("/health/ready/")
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "unavailable"


def test_the_schema_and_offline_docs_are_served(client: Any, db: Any) -> None:
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert {"/api/v1/events/", "/api/v1/events/batch/", "/api/v1/messages/{id}/",
            "/api/v1/messages/{id}/cancel/", "/api/v1/event-types/"} <= set(paths)

    docs = client.get("/api/docs/").content.decode()
    assert "cdn" not in docs.lower() and "https://" not in docs
    asset = next(part.split('"')[0] for part in docs.split('src="')[1:] if "swagger" in part)
    static = client.get(asset)
    assert static.status_code == 200, asset
