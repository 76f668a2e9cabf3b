"""Tracking events in the admin (read-only, searchable, the raw payload), a message's tracking
history and suppression on its page, and the dashboard's deliverability panel."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from anymail.signals import AnymailTrackingEvent
from django.test import Client
from django.urls import reverse

from notifications import suppression
from notifications.delivery import drain_lane
from notifications.models import Message, Status, TrackingEvent
from notifications.models import SuppressionReason as R
from notifications.tracking import HISTORY_SHOWN, record_event
from tests.deliverability.test_admin_suppressions import order

CHANGELIST = "admin:notifications_trackingevent_changelist"
# When the ESP says the events happened: two days ago (an event with no time is placed at now).
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)

pytestmark = pytest.mark.usefixtures("demo", "no_wakeups")


def sent(to: str) -> Message:
    """A message queued, then sent by an in-process drain (the `outbox` backend)."""
    message = order(to)
    drain_lane("transactional")
    message.refresh_from_db()
    assert message.status == Status.SENT
    return message


def webhook(kind: str, *, message: Message | None = None, esp: str = "Postmark",
            minutes: int = 0, **fields: Any) -> TrackingEvent | None:
    """What Anymail's tracking view hands the receiver for one ESP event."""
    defaults: dict[str, Any] = {
        "event_type": kind, "event_id": str(uuid.uuid4()),
        "timestamp": T0 + timedelta(minutes=minutes),
        "message_id": f"pm-{message.pk}" if message else "pm-unknown",
        "recipient": message.to_email if message else "stranger@example.com",
        "metadata": {"notification_id": str(message.pk)} if message else {},
        "esp_event": {"RecordType": kind, "Details": "<b>smtp;550</b>"},
    }
    return record_event(esp, AnymailTrackingEvent(**{**defaults, **fields}))


@pytest.fixture
def sent_ann(outbox: list[Any]) -> Message:
    return sent("ann@example.com")


def rows(client: Client, **params: Any) -> list[str]:
    page = client.get(reverse(CHANGELIST), params)
    assert page.status_code == 200
    return re.findall(r'<td class="field-recipient">([^<]*)</td>', page.content.decode())


def test_the_list_shows_matched_and_unknown_events_and_filters_them(
        ops: Client, sent_ann: Message) -> None:
    webhook("delivered", message=sent_ann)
    webhook("bounced", esp="Amazon SES", message_id="ses-9", recipient="lost@example.com",
            metadata={"notification_id": "999999"})

    page = ops.get(reverse(CHANGELIST)).content.decode()
    assert f'<a href="/admin/notifications/message/{sent_ann.pk}/change/">#{sent_ann.pk}</a>' \
        in page
    assert '<td class="field-message_link">unknown</td>' in page
    assert rows(ops, matched="no") == ["lost@example.com"]
    assert rows(ops, matched="yes") == ["ann@example.com"]
    assert rows(ops, event_type="bounced") == ["lost@example.com"]
    assert rows(ops, esp="Amazon SES") == ["lost@example.com"]
    assert rows(ops, applied__exact="1") == ["ann@example.com"]
    assert rows(ops, applied__exact="0") == ["lost@example.com"]


def test_it_lists_the_events_the_catch_up_still_retries_and_those_it_gave_up(
        ops: Client, sent_ann: Message) -> None:
    webhook("delivered", message=sent_ann)
    webhook("bounced", message_id="ses-1", recipient="waits@example.com")
    webhook("bounced", message_id="ses-2", recipient="old@example.com")
    TrackingEvent.objects.filter(recipient="old@example.com").update(
        received_at=T0, catch_up_tries=29, catch_up_at=None)  # as the catch-up leaves it

    assert rows(ops, catch_up="waiting") == ["waits@example.com"]
    assert rows(ops, catch_up="given_up") == ["old@example.com"]


def test_it_searches_by_recipient_esp_id_and_our_id(ops: Client, sent_ann: Message) -> None:
    webhook("delivered", message=sent_ann)
    webhook("deferred", message_id="ses-9", recipient="Lost@Example.com",
            metadata={"notification_id": "999999"})

    assert rows(ops, q="ANN@example.com") == ["ann@example.com"]
    assert rows(ops, q="lost@example.com") == ["Lost@Example.com"]
    assert rows(ops, q=f"pm-{sent_ann.pk}") == ["ann@example.com"]
    assert rows(ops, q=str(sent_ann.pk)) == ["ann@example.com"]
    assert rows(ops, q="999999") == ["Lost@Example.com"]  # unknown: by the id it carried
    assert rows(ops, q="nobody@example.com") == []
    assert rows(ops, q="'; DROP TABLE x; --") == []


def test_the_detail_shows_the_raw_payload_and_nothing_can_be_changed(
        ops: Client, sent_ann: Message) -> None:
    event = webhook("bounced", message=sent_ann, description="mailbox unknown",
                    esp_event={"Type": "HardBounce", "Details": "<b>smtp;550</b>"})
    assert event is not None
    url = reverse("admin:notifications_trackingevent_change", args=[event.pk])
    page = ops.get(url).content.decode()
    assert "&quot;Type&quot;: &quot;HardBounce&quot;" in page  # pretty-printed, escaped
    assert "&lt;b&gt;smtp;550&lt;/b&gt;" in page and "<b>smtp;550</b>" not in page
    assert ops.post(url, {"event_type": "delivered"}).status_code == 403
    assert ops.get(reverse("admin:notifications_trackingevent_add")).status_code == 403
    delete = reverse("admin:notifications_trackingevent_delete", args=[event.pk])
    assert ops.post(delete, {"post": "yes"}).status_code == 403
    assert TrackingEvent.objects.get(pk=event.pk).event_type == "bounced"


def test_the_message_page_shows_its_tracking_history_and_bounce(
        ops: Client, sent_ann: Message) -> None:
    webhook("opened", message=sent_ann, minutes=5)
    webhook("delivered", message=sent_ann, minutes=1)
    webhook("bounced", message=sent_ann, minutes=9, description="mailbox unknown",
            esp_event={"Type": "HardBounce"})
    other = sent("bob@example.com")
    webhook("clicked", message=other)

    page = ops.get(reverse("admin:notifications_message_change", args=[sent_ann.pk]))
    text = page.content.decode()
    assert "Tracking history" in text
    assert "3 (listed below; also in <a href=" in text
    history = re.findall(r'<td class="field-event_type">\s*<p>(\w+)</p>', text)
    assert history == ["delivered", "opened", "bounced"]  # oldest first, only this message's
    assert "mailbox unknown" in text
    assert re.search(r"Bounce:</label>\s*<div class=\"readonly\">Hard", text)


def test_the_message_page_shows_the_newest_of_a_long_history_and_links_to_all_of_it(
        ops: Client, sent_ann: Message) -> None:
    webhook("delivered", message=sent_ann, minutes=0)
    for n in range(HISTORY_SHOWN):
        webhook("opened", message=sent_ann, minutes=n + 1)
    webhook("complained", message=sent_ann, minutes=HISTORY_SHOWN + 9)
    webhook("clicked", message=sent("bob@example.com"))  # another message's

    text = ops.get(reverse("admin:notifications_message_change", args=[sent_ann.pk])) \
        .content.decode()

    shown = re.findall(r'<td class="field-event_type">\s*<p>(\w+)</p>', text)
    # The newest, oldest first: the delivered and the first open are left out.
    assert shown == ["opened"] * (HISTORY_SHOWN - 1) + ["complained"]
    link = re.search(r'the newest 50 are listed below; <a href="([^"]+)">all 52 in the '
                     r"tracking events list</a>", text)
    assert link is not None
    listed = ops.get(link.group(1).replace("&amp;", "&"))
    assert listed.status_code == 200
    assert re.findall(r'<td class="field-recipient">([^<]*)</td>', listed.content.decode()) \
        == ["ann@example.com"] * 52


def test_a_suppressed_message_links_to_the_entry_that_stopped_it(ops: Client) -> None:
    row, _ = suppression.suppress(email="cat@example.com", reason=R.COMPLAINT)
    message = order("cat@example.com")
    assert message.status == Status.SUPPRESSED

    text = ops.get(reverse("admin:notifications_message_change", args=[message.pk])) \
        .content.decode()
    link = reverse("admin:notifications_suppression_change", args=[row.pk])
    assert f'<a href="{link}">cat@example.com: Complaint (marked as spam) (all mail)</a>' in text
    assert ops.get(link).status_code == 200


def test_a_viewer_reads_tracking_events(viewer_client: Client, sent_ann: Message) -> None:
    webhook("delivered", message=sent_ann)
    assert rows(viewer_client) == ["ann@example.com"]
    page = viewer_client.get(reverse("admin:notifications_message_change", args=[sent_ann.pk]))
    assert "Tracking history" in page.content.decode()


def test_the_dashboard_counts_the_last_days_tracking(ops: Client, outbox: list[Any]) -> None:
    first, second, third = (sent(f"{n}@example.com") for n in ("a", "b", "c"))
    webhook("delivered", message=first)
    webhook("delivered", message=second)
    webhook("complained", message=second)
    webhook("bounced", message=third, esp_event={"Type": "HardBounce"})
    webhook("delivered")  # no message matched
    old = webhook("delivered", message=third)
    assert old is not None
    TrackingEvent.objects.filter(pk=old.pk).update(
        received_at=old.received_at - timedelta(hours=25))

    data = ops.get(reverse("admin:notifications_message_dashboard_data")).json()
    assert {k: v["value"] for k, v in data["deliverability"].items()
            if not k.startswith("rates")} == {
        "delivered": 2, "bounced": 1, "complained": 1, "unknown": 1}
    page = ops.get(reverse("admin:notifications_message_dashboard")).content.decode()
    assert re.search(r'data-k="deliverability.complained">1<', page)
    assert "?matched=no" in page
