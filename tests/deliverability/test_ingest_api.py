"""Ingest over HTTP with a suppressed recipient: still a 202 (the producer needs not know, and
cannot probe the list), and the message is `suppressed` at once."""

from __future__ import annotations

from rest_framework.test import APIClient

from notifications import suppression
from notifications.models import Message, Status, SuppressionReason
from tests.api.conftest import api, event, producer, token  # noqa: F401 (fixtures)


def test_a_suppressed_recipient_still_gets_a_202_and_the_message_shows_suppressed(
        api: APIClient) -> None:  # noqa: F811
    suppression.suppress(email="ann@example.com", reason=SuppressionReason.HARD_BOUNCE,
                         source="test")

    response = api.post("/api/v1/events/", event(), format="json")

    assert response.status_code == 202
    assert response.json()["status"] == "suppressed"
    detail = api.get(f"/api/v1/messages/{response.json()['id']}/").json()
    assert detail["status"] == "suppressed"
    assert Message.objects.get().status == Status.SUPPRESSED


def test_a_batch_answers_each_item_and_suppresses_only_the_suppressed(
        api: APIClient) -> None:  # noqa: F811
    suppression.suppress(email="bob@example.com", reason=SuppressionReason.COMPLAINT,
                         source="test")

    response = api.post("/api/v1/events/batch/", {"events": [
        event(to="ann@example.com"), event(to="bob@example.com")]}, format="json")

    assert response.status_code in (200, 202, 207), response.content
    statuses = {m.to_email: m.status for m in Message.objects.all()}
    assert statuses == {"ann@example.com": Status.PENDING, "bob@example.com": Status.SUPPRESSED}
