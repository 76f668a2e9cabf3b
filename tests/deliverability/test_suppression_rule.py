"""The suppression list's one rule, applied at ingest and when a drain claims, and the tracking
transitions' precedence."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from notifications import suppression, transitions
from notifications.delivery import claim_batch, drain_lane
from notifications.models import (
    Bounce,
    EventType,
    LaneMinute,
    Message,
    Status,
    Suppression,
    SuppressionReason,
)
from notifications.services import notify, notify_many

pytestmark = pytest.mark.usefixtures("demo", "no_wakeups")

ORDER = {"order_id": 7, "total": "$5", "items": [{"name": "Tea", "qty": 1}]}
NEWS = {"headline": "News", "body": "Hello"}


def order(to: str) -> Message:
    return notify(event="order.placed", to=to, data=ORDER)


def newsletter(to: str) -> Message:
    return notify(event="marketing.newsletter", to=to, data=NEWS)


def exempt(event: str, value: bool = True) -> None:
    event_type = EventType.objects.get(key=event)
    event_type.unsubscribe_exempt = value
    event_type.save()  # as the admin does: the lookups cache forgets the event type


def test_a_hard_bounced_address_is_suppressed_at_ingest_and_the_producer_never_knows(
    django_capture_on_commit_callbacks: Any,
) -> None:
    suppression.suppress(email="ann@example.com", reason=SuppressionReason.HARD_BOUNCE,
                         source="test")

    # The rollup is counted once ingest's transaction commits.
    with django_capture_on_commit_callbacks(execute=True):
        message = order("Ann@Example.com")  # another spelling of the same mailbox

    assert message.pk is not None and message.status == Status.SUPPRESSED
    message.refresh_from_db()
    assert message.status == Status.SUPPRESSED
    assert message.suppressed_by.reason == SuppressionReason.HARD_BOUNCE
    assert "hard bounce" in message.last_error
    assert LaneMinute.objects.get(lane="transactional").suppressed == 1


def test_a_batch_suppresses_only_the_suppressed_recipients() -> None:
    suppression.suppress(email="bad@example.com", reason=SuppressionReason.COMPLAINT,
                         source="test")

    results = notify_many([
        {"event": "order.placed", "to": "ok@example.com", "data": ORDER},
        {"event": "order.placed", "to": "bad@example.com", "data": ORDER},
    ])

    statuses = [Message.objects.get(pk=r.message.pk).status for r in results]
    assert statuses == [Status.PENDING, Status.SUPPRESSED]


def test_an_address_suppressed_while_its_message_waited_is_never_sent(outbox: list[Any]) -> None:
    waiting = order("ann@example.com")
    other = order("bob@example.com")
    suppression.suppress(email="ann@example.com", reason=SuppressionReason.HARD_BOUNCE,
                         source="test")

    report = drain_lane("transactional", budget=5)

    waiting.refresh_from_db()
    assert waiting.status == Status.SUPPRESSED
    assert waiting.attempts == 0  # the claim's attempt was given back: nothing was tried
    assert not waiting.delivery_attempts.exists()
    assert [e.to for e in outbox] == [["bob@example.com"]]
    assert Message.objects.get(pk=other.pk).status == Status.SENT
    assert report.suppressed == 1


def test_an_unsubscribe_stops_its_category_only_and_exempt_mail_still_goes() -> None:
    exempt("order.placed", False)  # the demo makes receipts exempt; start from a plain one
    suppression.unsubscribe(email="ann@example.com", categories=["newsletter"], source="test")
    assert newsletter("ann@example.com").status == Status.SUPPRESSED
    assert order("ann@example.com").status == Status.PENDING  # another category

    suppression.unsubscribe(email="ann@example.com", categories=[""], source="test")
    assert order("ann@example.com").status == Status.SUPPRESSED  # from everything
    exempt("order.placed")
    assert order("ann@example.com").status == Status.PENDING  # a receipt ignores unsubscribes


def test_exempt_mail_is_never_exempt_from_a_complaint_or_a_hard_bounce() -> None:
    exempt("order.placed")
    suppression.suppress(email="ann@example.com", reason=SuppressionReason.COMPLAINT,
                         source="test")
    assert order("ann@example.com").status == Status.SUPPRESSED


def test_a_weaker_reason_never_replaces_a_stronger_one() -> None:
    row, changed = suppression.suppress(email="ann@example.com",
                                        reason=SuppressionReason.COMPLAINT, source="webhook")
    assert changed
    # Unsubscribing from everything later must not turn the complaint into an unsubscribe
    # (which exempt mail may ignore).
    assert suppression.unsubscribe(email="ann@example.com", categories=[""],
                                   source="one-click") == 0
    row.refresh_from_db()
    assert (row.reason, row.source) == (SuppressionReason.COMPLAINT, "webhook")
    # ...and a resubscribe lifts only unsubscribes.
    assert suppression.resubscribe(email="ann@example.com", categories=[""], source="page") == 0
    assert Suppression.objects.get(pk=row.pk).active


def test_a_removed_suppression_can_come_back_stronger() -> None:
    row, _ = suppression.suppress(email="ann@example.com", reason=SuppressionReason.MANUAL,
                                  source="admin")
    assert suppression.unsuppress(pks=[row.pk], user="ops", reason="asked by support") == 1
    assert order("ann@example.com").status == Status.PENDING

    _, changed = suppression.suppress(email="ann@example.com",
                                      reason=SuppressionReason.HARD_BOUNCE, source="webhook")

    assert changed
    assert Suppression.objects.get(pk=row.pk).reason == SuppressionReason.HARD_BOUNCE
    assert Suppression.objects.count() == 1


def test_the_claim_check_is_one_query(outbox: list[Any]) -> None:
    for n in range(5):
        order(f"r{n}@example.com")
    [message] = claim_batch("transactional", 1)
    with CaptureQueriesContext(connection) as queries:
        live = suppression.stop_suppressed(claim_batch("transactional", 4), claimed=True)
    checks = [q for q in queries.captured_queries if "notifications_suppression" in q["sql"]]
    assert len(live) == 4 and len(checks) == 1


def sent(message: Message) -> Message:
    [claimed] = [m for m in claim_batch(message.lane, 100) if m.pk == message.pk]
    transitions.mark_sent([message.pk], token=claimed.lease_token, provider="default")
    return claimed


def status(message: Message) -> tuple[str, str]:
    message.refresh_from_db()
    return message.status, message.bounce


def test_tracking_never_moves_a_message_down() -> None:
    message = order("ann@example.com")
    sent(message)

    assert transitions.deliver(message.pk) == 1
    assert transitions.bounce(message.pk, kind=Bounce.SOFT, error="mailbox full") == 1
    assert transitions.deliver(message.pk) == 0  # a late delivered: still bounced
    assert transitions.bounce(message.pk, kind=Bounce.SOFT, error="again") == 0
    assert status(message) == (Status.BOUNCED, Bounce.SOFT)
    assert transitions.bounce(message.pk, kind=Bounce.HARD, error="no such user") == 1
    assert transitions.bounce(message.pk, kind=Bounce.SOFT, error="late soft") == 0
    assert status(message) == (Status.BOUNCED, Bounce.HARD)
    assert transitions.complain(message.pk) == 1
    assert transitions.bounce(message.pk, kind=Bounce.HARD, error="late") == 0
    assert transitions.deliver(message.pk) == 0
    assert status(message)[0] == Status.COMPLAINED


def test_tracking_cannot_move_a_message_that_was_not_sent() -> None:
    message = order("ann@example.com")
    assert transitions.deliver(message.pk) == 0
    assert transitions.complain(message.pk) == 0
    assert status(message)[0] == Status.PENDING


def test_a_mixed_batch_counts_each_lanes_suppressions_in_its_own_rollup(
    django_capture_on_commit_callbacks: Any,
) -> None:
    suppression.suppress(email="bad@example.com", reason=SuppressionReason.COMPLAINT,
                         source="test")

    with django_capture_on_commit_callbacks(execute=True):
        results = notify_many([
            {"event": "order.placed", "to": "ok@example.com", "data": ORDER},
            {"event": "marketing.newsletter", "to": "bad@example.com", "data": NEWS},
            {"event": "order.placed", "to": "bad@example.com", "data": ORDER},
            {"event": "marketing.newsletter", "to": "bad@example.com", "data": NEWS,
             "idempotency_key": "second"},
        ])

    assert [Message.objects.get(pk=r.message.pk).lane for r in results] == [
        "transactional", "bulk", "transactional", "bulk"]
    counted: dict[str, int] = {}
    for lane, suppressed in LaneMinute.objects.values_list("lane", "suppressed"):
        counted[lane] = counted.get(lane, 0) + suppressed  # a minute may turn meanwhile
    assert counted == {"transactional": 1, "bulk": 2}
