"""The API's message detail: the tracking history (oldest first) and, for a suppressed message,
why it was never sent. The write endpoints' answers stay without them (no query per row)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from notifications import suppression
from notifications.delivery import drain_lane
from notifications.models import Message, Status, Suppression
from notifications.models import SuppressionReason as R
from notifications.tracking import HISTORY_SHOWN
from tests.api.conftest import _fresh_caches, api, event, producer, token  # noqa: F401
from tests.deliverability.test_admin_tracking import T0, webhook


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def sent_through_api(api: APIClient, **overrides: Any) -> Message:  # noqa: F811
    created = api.post("/api/v1/events/", event(**overrides), format="json").json()
    drain_lane("transactional")
    return Message.objects.get(pk=created["id"])


def test_the_detail_shows_the_tracking_history_oldest_first(api: APIClient,  # noqa: F811
                                                            outbox: list[Any]) -> None:
    message = sent_through_api(api)
    webhook("opened", message=message, minutes=7)
    webhook("delivered", message=message, minutes=2)
    webhook("bounced", message=message, minutes=9, description="Mailbox full",
            esp_event={"Type": "SoftBounce"})
    no_time = webhook("clicked", message=message, timestamp=None)
    assert no_time is not None
    other = sent_through_api(api, to="bob@example.com")
    webhook("delivered", message=other)

    body = api.get(f"/api/v1/messages/{message.pk}/").json()
    assert body["status"] == "bounced"
    assert body["suppressed"] is None
    # The clicked event carried no time: it is placed (and shown) at when its webhook came,
    # now, after the others (which happened two days ago), on every database. Nothing of bob's.
    shown = [(t["event"], t["at"], t["esp"], t["bounce"], t["description"])
             for t in body["tracking"]]
    assert shown == [
        ("delivered", iso(T0 + timedelta(minutes=2)), "Postmark", None, ""),
        ("opened", iso(T0 + timedelta(minutes=7)), "Postmark", None, ""),
        ("bounced", iso(T0 + timedelta(minutes=9)), "Postmark", "soft", "Mailbox full"),
        ("clicked", iso(no_time.received_at), "Postmark", None, ""),
    ]


def test_a_suppressed_message_says_why(api: APIClient) -> None:  # noqa: F811
    suppression.suppress(email="ann@example.com", reason=R.HARD_BOUNCE)
    suppression.suppress(email="bob@example.com", reason=R.UNSUBSCRIBE, scope="newsletter")

    ann = api.post("/api/v1/events/", event(), format="json").json()
    assert ann["status"] == "suppressed" and "suppressed" not in ann  # the write answer: lean
    body = api.get(f"/api/v1/messages/{ann['id']}/").json()
    assert body["suppressed"] == {"reason": "hard_bounce", "scope": None}
    assert (body["tracking"], body["tracking_total"]) == ([], 0)

    bob = api.post("/api/v1/events/", event(
        event="marketing.newsletter", to="bob@example.com",
        data={"headline": "News", "body": "Hello"}), format="json").json()
    assert api.get(f"/api/v1/messages/{bob['id']}/").json()["suppressed"] == {
        "reason": "unsubscribe", "scope": "newsletter"}

    # The entry removed since: the message stays suppressed and still says what stopped it.
    Suppression.objects.filter(email="ann@example.com").update(active=False)
    assert api.get(f"/api/v1/messages/{ann['id']}/").json()["suppressed"]["reason"] == \
        "hard_bounce"


def test_cancel_answers_the_detail_shape(api: APIClient) -> None:  # noqa: F811
    created = api.post("/api/v1/events/", event(), format="json").json()
    body = api.post(f"/api/v1/messages/{created['id']}/cancel/").json()
    assert body["status"] == Status.CANCELLED
    assert (body["tracking"], body["suppressed"]) == ([], None)


def test_the_detail_costs_the_same_few_queries_however_long_the_history(
        api: APIClient, outbox: list[Any]) -> None:  # noqa: F811
    message = sent_through_api(api)
    url = f"/api/v1/messages/{message.pk}/"
    webhook("delivered", message=message)
    api.get(url)  # warm the per-process caches (producer, key)
    with CaptureQueriesContext(connection) as one:
        api.get(url)
    for n in range(20):
        webhook("opened", message=message, minutes=n + 1)
    with CaptureQueriesContext(connection) as many:
        assert len(api.get(url).json()["tracking"]) == 21
    assert len(many.captured_queries) == len(one.captured_queries)


def test_the_detail_shows_the_newest_events_of_a_long_history_and_their_total(
        api: APIClient, outbox: list[Any]) -> None:  # noqa: F811
    message = sent_through_api(api)
    url = f"/api/v1/messages/{message.pk}/"
    for n in range(HISTORY_SHOWN):
        webhook("opened", message=message, minutes=n + 1)

    body = api.get(url).json()
    assert (len(body["tracking"]), body["tracking_total"]) == (HISTORY_SHOWN, HISTORY_SHOWN)

    webhook("delivered", message=message, minutes=0)  # happened first: now the oldest
    webhook("clicked", message=message, minutes=HISTORY_SHOWN + 5)
    webhook("complained", message=message, minutes=HISTORY_SHOWN + 9)
    with CaptureQueriesContext(connection) as capped:
        body = api.get(url).json()

    assert body["tracking_total"] == HISTORY_SHOWN + 3
    events = body["tracking"]
    assert len(events) == HISTORY_SHOWN
    # The newest, oldest first: the delivered and the first two opens are left out.
    assert [e["event"] for e in events[-3:]] == ["opened", "clicked", "complained"]
    assert events[0]["at"] == iso(T0 + timedelta(minutes=3))
    assert [e["at"] for e in events] == sorted(e["at"] for e in events)
    assert "delivered" not in {e["event"] for e in events}
    # Past the cap: one COUNT more, however long the history.
    for n in range(20):
        webhook("opened", message=message, minutes=100 + n)
    with CaptureQueriesContext(connection) as longer:
        assert api.get(url).json()["tracking_total"] == HISTORY_SHOWN + 23
    assert len(longer.captured_queries) == len(capped.captured_queries)


@pytest.fixture(autouse=True)
def _no_wakeups(no_wakeups: list[str]) -> None:
    """The API's ingest wakes lanes; these tests drain in-process instead."""
