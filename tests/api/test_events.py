from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from notifications.models import Message
from tests.api.conftest import event

URL = "/api/v1/events/"


def error_of(response: Any) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert {"code", "message"} <= set(body["error"]), body
    return body["error"]


def test_it_accepts_an_event_and_answers_202_with_the_message(api: APIClient) -> None:
    response = api.post(URL, event(to={"email": "ann@example.com", "name": "Ann"}, locale="en"),
                        format="json")

    assert response.status_code == 202
    body = response.json()
    message = Message.objects.get()
    assert body["id"] == message.pk
    assert (body["status"], body["event"], body["lane"]) == ("pending", "order.placed",
                                                             "transactional")
    assert body["to"] == {"email": "ann@example.com", "name": "Ann"}
    assert message.producer.name == "order-service"


def test_a_replay_with_the_same_key_and_body_returns_the_original(api: APIClient) -> None:
    first = api.post(URL, event(), format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    again = api.post(URL, event(idempotency_key="k-1"), format="json")

    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["id"] == first.json()["id"]
    assert Message.objects.count() == 1


def test_the_same_key_with_a_different_body_is_a_409(api: APIClient) -> None:
    api.post(URL, event(), format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    response = api.post(URL, event(to="bob@example.com"), format="json",
                        HTTP_IDEMPOTENCY_KEY="k-1")

    assert response.status_code == 409
    assert error_of(response)["code"] == "idempotency_conflict"
    assert Message.objects.count() == 1


def test_header_and_body_keys_must_agree(api: APIClient) -> None:
    response = api.post(URL, event(idempotency_key="a"), format="json", HTTP_IDEMPOTENCY_KEY="b")
    assert response.status_code == 400
    assert "idempotency_key" in error_of(response)["fields"]


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        (event(data={"order_id": 1, "total": "1", "items": [{"name": "x", "qty": 0}]}), "data",
         "$.items[0].qty: 0 is less than the minimum of 1"),
        (event(to="not-an-address"), "to", "not a valid email address"),
        (event(to={"email": "a@example.com", "nick": "x"}), "to.nick", "Unknown field"),
        (event(locale="english!"), "locale", "a language code such as"),
        (event(send_at="2001-01-01T00:00:00Z"), "send_at", "in the past"),
        (event(send_at=(timezone.now() + timedelta(days=400)).isoformat()), "send_at",
         "within 30 days"),
        (event(send_at="tomorrow"), "send_at", "Datetime has wrong format"),
        (event(colour="blue"), "colour", "Unknown field"),
        (event(data=[1, 2]), "data", "Expected a dictionary"),
        ({"to": "a@example.com"}, "event", "required"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_reason(
    api: APIClient, body: dict[str, Any], field: str, reason: str
) -> None:
    response = api.post(URL, body, format="json")

    assert response.status_code == 400, response.content
    error = error_of(response)
    assert error["code"] == "invalid"
    assert any(reason in text for text in error["fields"][field]), error
    assert Message.objects.count() == 0


def test_an_event_outside_the_keys_scope_is_a_403(api: APIClient) -> None:
    for name in ("user.registered", "nope.nothing"):
        response = api.post(URL, event(event=name), format="json")
        assert response.status_code == 403
        assert error_of(response)["code"] == "forbidden"
    assert Message.objects.count() == 0


@pytest.mark.parametrize(
    ("content", "content_type", "status", "code"),
    [
        ("{not json", "application/json", 400, "malformed_body"),
        ("[1, 2]", "application/json", 400, "invalid"),
        ("event=order.placed", "application/x-www-form-urlencoded", 415,
         "unsupported_media_type"),
    ],
)
def test_a_body_that_is_not_a_json_object_gets_a_clear_error(
    api: APIClient, content: str, content_type: str, status: int, code: str
) -> None:
    response = api.post(URL, content, content_type=content_type)
    assert response.status_code == status
    assert error_of(response)["code"] == code


def test_a_body_over_the_limit_is_a_413(api: APIClient, settings: Any) -> None:
    big = json.dumps(event(data={**event()["data"], "pad": "x" * 3_000_000}))
    response = api.post(URL, big, content_type="application/json")
    assert response.status_code == 413
    assert error_of(response)["code"] == "payload_too_large"


def test_a_wrong_method_is_a_405(api: APIClient) -> None:
    response = api.get(URL)
    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"


@pytest.mark.parametrize("header", [None, "Bearer nope", "Bearer ntf_aaaa_bbbb", "Basic abc",
                                    "Bearer"])
def test_a_missing_or_bad_key_is_a_401(token: str, header: str | None) -> None:
    client = APIClient()
    if header:
        client.credentials(HTTP_AUTHORIZATION=header)
    response = client.post(URL, event(), format="json")
    assert response.status_code == 401
    assert error_of(response)["code"] == "unauthenticated"


def test_a_revoked_key_stops_working_at_once(api: APIClient, producer: Any) -> None:
    from notifications.producers import api_key_revoke

    assert api.post(URL, event(), format="json").status_code == 202
    api_key_revoke(key=producer.api_keys.get())
    assert api.post(URL, event(), format="json").status_code == 401


def test_unknown_api_paths_answer_json_404(api: APIClient) -> None:
    response = api.get("/api/v1/nothing-here/")
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


# The API checks JSON types only; everything else is notify()'s: the same refusal either way.
@pytest.mark.parametrize(
    "body",
    [
        event(to="not-an-address"),
        event(locale="english!"),
        event(send_at=(timezone.now() - timedelta(hours=1)).isoformat()),
        event(send_at=(timezone.now() + timedelta(days=400)).isoformat()),
        event(idempotency_key="k" * 201),
        event(data={"order_id": 1, "total": "1", "items": [{"name": "x", "qty": 0}]}),
        event(to={"email": "a@example.com", "name": "two\nlines"}),
    ],
)
def test_the_api_refuses_what_notify_refuses_with_the_same_field_and_reason(
    api: APIClient, body: dict[str, Any],
) -> None:
    from django.utils.dateparse import parse_datetime

    from notifications.exceptions import NotifyError
    from notifications.services import notify

    response = api.post(URL, body, format="json")
    with pytest.raises(NotifyError) as caught:
        notify(event=body["event"], to=body["to"], data=body["data"],
               locale=body.get("locale"), idempotency_key=body.get("idempotency_key"),
               send_at=parse_datetime(body["send_at"]) if "send_at" in body else None)

    assert response.status_code == 400, response.content
    assert error_of(response)["fields"] == {caught.value.field: [caught.value.message]}
    assert Message.objects.count() == 0


def test_a_well_formed_date_that_does_not_exist_is_a_400_not_a_500(api: APIClient) -> None:
    response = api.post(URL, event(send_at="2027-02-30T10:00:00Z"), format="json")

    assert response.status_code == 400
    assert "Datetime has wrong format" in error_of(response)["fields"]["send_at"][0]


def test_a_key_reused_in_a_batch_and_alone_gets_the_same_answer(api: APIClient) -> None:
    api.post(URL, event(), format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    alone = api.post(URL, event(to="bob@example.com", idempotency_key="k-1"), format="json")
    batch = api.post("/api/v1/events/batch/",
                     {"events": [event(to="bob@example.com", idempotency_key="k-1")]},
                     format="json").json()["results"][0]

    assert alone.status_code == batch["status"] == 409
    assert error_of(alone) == batch["error"]
