"""The Message pages: filters, search (Message-ID too), no full COUNT, the sandboxed preview,
audited requeue and cancel for operators only, CSV export of the filtered list."""

from __future__ import annotations

import re
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
from notifications.delivery import claim_batch, message_id_for
from notifications.models import AuditEntry, DeadReason, Message, Producer, Status
from notifications.selectors import parse_message_id
from notifications.services import notify
from tests.console.test_dashboard import assert_no_full_count, seed

ORDER = {"order_id": 1, "total": "1", "items": []}
CHANGELIST = "admin:notifications_message_changelist"

pytestmark = pytest.mark.usefixtures("demo", "no_wakeups")


def order(to: str, **kw: Any) -> Message:
    return notify(event="order.placed", to=to, data=ORDER, **kw)


def dead(to: str) -> Message:
    message = order(to)
    [claimed] = [m for m in claim_batch("transactional", 100) if m.pk == message.pk]
    transitions.kill([message.pk], token=claimed.lease_token, reason=DeadReason.PERMANENT_ERROR,
                     error="AnymailRecipientsRefused: no")
    return Message.objects.get(pk=message.pk)


def listed(client: Client, **params: Any) -> set[str]:
    page = client.get(reverse(CHANGELIST), params)
    assert page.status_code == 200
    return set(re.findall(r"[\w.+-]+@example\.com", page.content.decode()))


def test_it_searches_by_message_id_id_key_and_recipient(ops: Client) -> None:
    ann = order("ann@example.com", idempotency_key="order-77")
    order("bob@example.com")
    order("annabel@example.com")

    assert listed(ops, q=message_id_for(ann.pk)) == {"ann@example.com"}
    assert listed(ops, q=message_id_for(ann.pk).strip("<>")) == {"ann@example.com"}
    assert listed(ops, q=str(ann.pk)) == {"ann@example.com"}
    assert listed(ops, q="order-77") == {"ann@example.com"}
    assert listed(ops, q="ann@example.com") == {"ann@example.com"}
    assert listed(ops, q="ann") == {"ann@example.com", "annabel@example.com"}
    assert listed(ops, q="<n999999.0123456789ab@elsewhere.test>") == set()
    assert listed(ops, q="'; DROP TABLE x; --") == set()


def test_parse_message_id_reads_only_ours() -> None:
    assert parse_message_id("<n123.0123456789ab@mail.example.com>") == 123
    assert parse_message_id(" n5.abcdefabcdef@x ") == 5
    assert parse_message_id("<123@mail.example.com>") is None
    assert parse_message_id("n123.xyz@x") is None


def test_it_filters_by_status_lane_event_type_producer_and_dates(ops: Client) -> None:
    dead("dead@example.com")
    order("ann@example.com")
    notify(event="marketing.newsletter", to="news@example.com", data={"headline": "h",
                                                                      "body": "b"})
    other = Producer.objects.create(name="shop")
    order("shop@example.com", producer=other)
    old = order("old@example.com")
    Message.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=10))
    today = timezone.localdate()

    assert listed(ops, status="dead") == {"dead@example.com"}
    assert listed(ops, lane="bulk") == {"news@example.com"}
    event_type = Message.objects.get(to_email="news@example.com").event_type_id
    assert listed(ops, event_type__id__exact=event_type) == {"news@example.com"}
    assert listed(ops, producer__id__exact=other.pk) == {"shop@example.com"}
    week_ago = (today - timedelta(days=7)).isoformat()
    assert "old@example.com" not in listed(ops, created_at__from=week_ago)
    assert listed(ops, created_at__to=week_ago) == {"old@example.com"}
    page = ops.get(reverse(CHANGELIST), {"created_at__from": "not-a-date"}, follow=True)
    assert page.status_code == 200  # the admin's "bad filter" redirect, not a 500


def test_the_changelist_never_counts_the_whole_table(ops: Client) -> None:
    seed(20_000)
    with CaptureQueriesContext(connection) as queries:
        page = ops.get(reverse(CHANGELIST))
        filtered = ops.get(reverse(CHANGELIST), {"status": "sent", "lane": "bulk"})
        dlq = ops.get(reverse("admin:dlq_deadletter_changelist"))
    assert page.status_code == filtered.status_code == dlq.status_code == 200
    assert_no_full_count(queries)
    assert "an estimate: the table is not counted" in filtered.content.decode()


def test_the_detail_shows_a_sandboxed_preview_the_data_and_attempts(ops: Client) -> None:
    message = dead("ann@example.com")

    page = ops.get(reverse("admin:notifications_message_change", args=[message.pk]))

    html = page.content.decode()
    iframe = re.search(r"<iframe[^>]*>", html).group(0)
    assert 'sandbox=""' in iframe and "allow-scripts" not in iframe
    assert "srcdoc=\"" in iframe and "Order 1 confirmed" in html
    assert 'class="text-part"' in html
    assert "&quot;order_id&quot;: 1" in html or '"order_id": 1' in html  # the event data
    assert message_id_for(message.pk).replace("<", "&lt;").replace(">", "&gt;") in html
    assert "AnymailRecipientsRefused" in html


def post_action(client: Client, action: str, pks: list[int], **extra: Any) -> Any:
    return client.post(reverse(CHANGELIST), {"action": action, "_selected_action": pks,
                                             **extra}, follow=True)


def test_cancel_asks_for_confirmation_then_cancels_and_audits(ops: Client) -> None:
    gone = dead("dead@example.com")  # first: its claim would take any message due
    waiting = order("ann@example.com")

    first = post_action(ops, "cancel_messages", [waiting.pk, gone.pk])

    assert "2 messages selected: <strong class=\"eligible\">1</strong>" in \
        first.content.decode()
    assert Message.objects.get(pk=waiting.pk).status == Status.PENDING  # not yet
    second = post_action(ops, "cancel_messages", [waiting.pk, gone.pk], confirm="yes",
                         reason="customer asked")
    assert "Cancelled 1 message(s)." in second.content.decode()
    assert Message.objects.get(pk=waiting.pk).status == Status.CANCELLED
    assert Message.objects.get(pk=gone.pk).status == Status.DEAD
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.username, entry.count, entry.reason) == (
        "cancel", "olga", 1, "customer asked")
    assert sorted(entry.filter["ids"]) == sorted([waiting.pk, gone.pk])


def test_a_confirmation_without_a_reason_asks_again(ops: Client) -> None:
    waiting = order("ann@example.com")
    page = post_action(ops, "cancel_messages", [waiting.pk], confirm="yes", reason=" ")
    assert "This field is required" in page.content.decode()
    assert Message.objects.get(pk=waiting.pk).status == Status.PENDING
    assert not AuditEntry.objects.exists()


def test_requeue_moves_dead_ones_back_and_audits(ops: Client) -> None:
    gone = dead("dead@example.com")
    waiting = order("ann@example.com")

    page = post_action(ops, "requeue_messages", [gone.pk, waiting.pk], confirm="yes",
                       reason="provider fixed")

    assert "Requeued 1 message(s)." in page.content.decode()
    gone.refresh_from_db()
    assert (gone.status, gone.attempts, gone.dead_reason) == (Status.PENDING, 0, "")
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.count, entry.reason) == ("requeue", 1, "provider fixed")


def test_a_viewer_can_neither_requeue_nor_cancel(viewer_client: Client) -> None:
    gone = dead("dead@example.com")  # first: its claim would take any message due
    waiting = order("ann@example.com")

    page = viewer_client.get(reverse(CHANGELIST)).content.decode()
    assert "requeue_messages" not in page and "cancel_messages" not in page
    for action in ("cancel_messages", "requeue_messages"):
        post_action(viewer_client, action, [waiting.pk, gone.pk], confirm="yes", reason="x")

    assert Message.objects.get(pk=waiting.pk).status == Status.PENDING
    assert Message.objects.get(pk=gone.pk).status == Status.DEAD
    assert not AuditEntry.objects.exists()


def test_the_action_forms_need_their_csrf_token(ops: Client) -> None:
    waiting = order("ann@example.com")
    client = Client(enforce_csrf_checks=True)
    client.force_login(User.objects.get(username="olga"))
    response = client.post(reverse(CHANGELIST), {
        "action": "cancel_messages", "_selected_action": [waiting.pk], "confirm": "yes",
        "reason": "x"})
    assert response.status_code == 403
    assert Message.objects.get(pk=waiting.pk).status == Status.PENDING


def test_csv_export_has_the_filtered_rows(viewer_client: Client) -> None:
    dead("dead@example.com")
    order("=cmd@example.com")
    order("ann@example.com")

    response = viewer_client.get(reverse("admin:notifications_message_export"),
                                 {"status": "pending"})

    assert response.status_code == 200 and response["Content-Type"] == "text/csv"
    body = b"".join(response.streaming_content).decode()
    lines = body.strip().splitlines()
    assert lines[0].startswith("id,status,lane,event_type__key")
    assert len(lines) == 3
    assert "dead@example.com" not in body and "ann@example.com" in body
    assert "'=cmd@example.com" in body  # formula-safe
    bad = viewer_client.get(reverse("admin:notifications_message_export"),
                            {"created_at__from": "yesterday"})
    assert bad.status_code == 400
