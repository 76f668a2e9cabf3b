from __future__ import annotations

from typing import Any

from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from notifications.delivery import claim_batch
from notifications.models import Message
from notifications.producers import api_key_create, producer_get_or_create
from tests.api.conftest import ORDER, event

BATCH = "/api/v1/events/batch/"


def test_a_batch_answers_each_item_in_order(api: APIClient) -> None:
    api.post("/api/v1/events/", event(idempotency_key="old"), format="json")
    items = [
        event(to="a@example.com"),
        event(to="bad-address"),
        event(event="user.registered"),
        event(idempotency_key="old"),
        event(idempotency_key="old", to="other@example.com"),
        {"event": "order.placed"},
        "not an object",
        event(to="b@example.com", idempotency_key="dup"),
        event(to="b@example.com", idempotency_key="dup"),
    ]

    response = api.post(BATCH, {"events": items}, format="json")

    assert response.status_code == 202
    body = response.json()
    statuses = [r["status"] for r in body["results"]]
    assert statuses == [202, 400, 403, 200, 409, 400, 400, 202, 200]
    assert [r["index"] for r in body["results"]] == list(range(len(items)))
    assert (body["accepted"], body["rejected"]) == (4, 5)
    assert "to" in body["results"][1]["error"]["fields"]
    assert body["results"][5]["error"]["fields"]["to"] == ["This field is required."]
    assert body["results"][8]["message"]["id"] == body["results"][7]["message"]["id"]
    assert Message.objects.count() == 3  # old, a@, b@


def test_a_batch_of_1000_costs_a_few_queries(api: APIClient) -> None:
    items = [event(to=f"u{n}@example.com", idempotency_key=f"k{n}") for n in range(1000)]

    with CaptureQueriesContext(connection) as queries:
        response = api.post(BATCH, {"events": items}, format="json")

    assert response.status_code == 202
    assert response.json()["accepted"] == 1000
    # One multi-row INSERT on PostgreSQL; SQLite splits it by its bound-parameter limit.
    other = [q["sql"][:80] for q in queries if not q["sql"].startswith("INSERT")]
    assert len(other) <= 12, other


def test_a_batch_over_the_maximum_is_refused_whole(api: APIClient) -> None:
    response = api.post(BATCH, {"events": [event()] * 1001}, format="json")
    assert response.status_code == 400
    assert "At most 1000" in response.json()["error"]["fields"]["events"][0]
    assert Message.objects.count() == 0


def test_a_message_shows_its_attempts_and_only_to_its_producer(api: APIClient,
                                                              outbox: list[Any]) -> None:
    from notifications.delivery import drain_lane

    created = api.post("/api/v1/events/", event(), format="json").json()
    drain_lane("transactional", budget=2)

    assert "subject" not in created and "attempt_log" not in created  # rendered when sent
    body = api.get(f"/api/v1/messages/{created['id']}/").json()
    assert body["status"] == "sent"
    assert body["subject"] == f"Order {ORDER['order_id']} confirmed"
    assert body["send_at"].endswith("Z") and body["created_at"] == created["created_at"]
    assert [(a["number"], a["outcome"], a["provider"]) for a in body["attempt_log"]] == [
        (1, "sent", "default")]

    other = producer_get_or_create(name="user-service", events=["order.placed"])
    stranger = APIClient()
    stranger.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_create(producer=other)[1]}")
    response = stranger.get(f"/api/v1/messages/{created['id']}/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert stranger.post(f"/api/v1/messages/{created['id']}/cancel/").status_code == 404


def test_cancel_before_sending_and_409_after(api: APIClient) -> None:
    first = api.post("/api/v1/events/", event(), format="json").json()
    response = api.post(f"/api/v1/messages/{first['id']}/cancel/")
    assert (response.status_code, response.json()["status"]) == (200, "cancelled")

    second = api.post("/api/v1/events/", event(to="b@example.com"), format="json").json()
    claim_batch("transactional", 10)
    response = api.post(f"/api/v1/messages/{second['id']}/cancel/")
    assert response.status_code == 409
    assert response.json()["error"] == {
        "code": "not_cancellable",
        "message": "The message is processing; only pending or retry messages can be cancelled.",
    }


def test_event_types_lists_what_the_key_may_send_with_schemas(api: APIClient) -> None:
    body = api.get("/api/v1/event-types/").json()
    assert [e["key"] for e in body] == ["marketing.newsletter", "order.placed", "password.reset"]
    assert body[1]["data_schema"]["required"] == ["order_id", "total", "items"]


def test_the_order_data_round_trips(api: APIClient) -> None:
    created = api.post("/api/v1/events/", event(), format="json").json()
    assert Message.objects.get(pk=created["id"]).data == ORDER
