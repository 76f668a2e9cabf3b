"""The reputation guard (notifications/reputation.py) on seeded rows: the drains' rollup
(LaneMinute) as the volume, TrackingEvent rows as the bounces and complaints; the guard and the
alerts run through the minute check, as the DLQ cluster runs them."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from dlq import tasks
from dlq.alerts import alerts_check, firing_conditions
from dlq.models import AlertState
from dlq.tasks import minute_check
from notifications import reputation
from notifications.lanes import lane_pause, lane_resume
from notifications.models import (
    AuditAction,
    AuditEntry,
    DeliveryAttempt,
    LaneMinute,
    LaneState,
    Message,
    ReputationRate,
    Status,
    TrackingEvent,
)
from notifications.rollup import minute_of
from notifications.services import notify
from tests.factories import staff

pytestmark = pytest.mark.usefixtures("demo", "no_wakeups", "guard_settings")

NEWSLETTER = {"headline": "h", "body": "b"}
ORDER = {"order_id": 7, "total": "$5", "items": [{"name": "Tea", "qty": 1}]}
LOCMEM = "django.core.mail.backends.locmem.EmailBackend"


@pytest.fixture
def guard_settings(settings: Any, outbox: list[Any]) -> Any:
    """Thresholds as shipped, a smaller minimum volume; only the reputation alerts on, by email."""
    settings.NOTIFY_DELIVERABILITY = {
        **settings.NOTIFY_DELIVERABILITY, "WINDOW_HOURS": 24, "MIN_VOLUME": 100,
        "BOUNCE_RATE": 0.04, "COMPLAINT_RATE": 0.0008}
    settings.NOTIFY_ALERTS = {
        **settings.NOTIFY_ALERTS, "DLQ_SIZE": 0, "OLDEST_DUE_SECONDS": 0, "HEARTBEAT_SECONDS": 0,
        "EMAILS": ["ops@example.com"], "WEBHOOK_URL": ""}
    return settings


def sent(lane: str, count: int, *, ago: timedelta = timedelta(minutes=10),
         provider: str = "default") -> None:
    """What the drains' rollup says was accepted through `provider` `ago` (provider "": a row
    written before the rollup had providers)."""
    LaneMinute.objects.create(lane=lane, minute=minute_of(timezone.now() - ago), sent=count,
                              provider=provider)


def tracked(lane: str, count: int, *, event_type: str = "bounced", bounce: str = "hard",
            sent_ago: timedelta = timedelta(minutes=10),
            received_ago: timedelta = timedelta(minutes=5), provider: str = "default",
            ) -> list[Message]:
    """`count` accepted messages of `lane`, each with one tracking event as tracking.py stores
    it (matched: the message's lane set)."""
    now = timezone.now()
    messages = []
    for _ in range(count):
        if lane == "bulk":
            message = notify(event="marketing.newsletter", to=f"{uuid4().hex[:8]}@example.com",
                             data=NEWSLETTER)
        else:
            message = notify(event="order.placed", to=f"{uuid4().hex[:8]}@example.com",
                             data=ORDER)
        Message.objects.filter(pk=message.pk).update(
            status=Status.SENT, sent_at=now - sent_ago, provider=provider)
        row = TrackingEvent.objects.create(
            esp="Postmark", dedupe_key=uuid4().hex, event_type=event_type, bounce=bounce,
            message=message, lane=lane, applied=True)
        TrackingEvent.objects.filter(pk=row.pk).update(received_at=now - received_ago)
        messages.append(message)
    return messages


def lane_rate(lane: str, now: datetime | None = None) -> reputation.Rate:
    return next(r for r in reputation.rates(now) if r.lane == lane and not r.provider)


def alert_subjects(outbox: list[Any]) -> list[str]:
    return [m.subject for m in outbox if m.subject.startswith("[notifications]")]


def is_paused(lane: str) -> bool:
    return LaneState.objects.get(lane=lane).paused


def test_it_does_nothing_under_the_thresholds(outbox: list[Any]) -> None:
    sent("bulk", 100)
    tracked("bulk", 4)  # 4.0%: not past 4%

    minute_check()

    rate = lane_rate("bulk")
    assert (rate.sent, rate.hard_bounces, rate.bounce_rate) == (100, 4, 0.04)
    assert not is_paused("bulk")
    assert alert_subjects(outbox) == []


def test_it_pauses_bulk_alerts_once_and_resolves_after_the_operator_resumes(
    outbox: list[Any],
) -> None:
    sent("bulk", 100)
    tracked("bulk", 5)

    minute_check()
    minute_check()

    state = LaneState.objects.get(lane="bulk")
    reason = "bounce rate 5.0% > 4.0% over 24 h (100 sent)"
    assert (state.paused, state.paused_by, state.pause_reason) == (
        True, "reputation guard", reason)
    audit = AuditEntry.objects.get(action=AuditAction.PAUSE)
    assert (audit.username, audit.target, audit.reason) == ("reputation guard", "lane bulk",
                                                           reason)
    assert alert_subjects(outbox) == ["[notifications] ALERT reputation:bulk:bounces"]
    assert outbox[0].to == ["ops@example.com"]
    assert f"Lane bulk: {reason}; the lane is paused" in outbox[0].body
    assert not is_paused("transactional")

    lane_resume(lane="bulk", user="ops", reason="list cleaned")
    minute_check()

    assert alert_subjects(outbox) == ["[notifications] ALERT reputation:bulk:bounces",
                                      "[notifications] RESOLVED reputation:bulk:bounces"]
    assert not is_paused("bulk")
    assert AuditEntry.objects.filter(action=AuditAction.PAUSE).count() == 1
    assert not AlertState.objects.exists()


def test_the_alert_holds_while_the_lane_stays_paused_past_the_window() -> None:
    """Nothing is sent while paused: the evidence must not slide out of the window and report
    "resolved" while the lane is still stopped."""
    sent("bulk", 100)
    tracked("bulk", 5)
    assert reputation.guard() == ["paused bulk: bounce rate 5.0% > 4.0% over 24 h (100 sent)"]
    reputation.rates_refresh()
    alerts_check()

    later = timezone.now() + timedelta(hours=30)
    reputation.rates_refresh(later)  # the minute check, 30 hours on
    assert [c.key for c in firing_conditions(later)] == ["reputation:bulk:bounces"]
    assert alerts_check(later) == []


def test_below_the_minimum_volume_nothing_happens(outbox: list[Any]) -> None:
    sent("bulk", 99)
    tracked("bulk", 50)

    minute_check()

    assert lane_rate("bulk").bounce_rate > 0.5
    assert not is_paused("bulk")
    assert alert_subjects(outbox) == []


def test_the_transactional_lane_alerts_and_keeps_sending(outbox: list[Any]) -> None:
    sent("transactional", 200)
    tracked("transactional", 20)

    minute_check()

    assert not is_paused("transactional") and not is_paused("bulk")
    assert not AuditEntry.objects.exists()
    assert alert_subjects(outbox) == ["[notifications] ALERT reputation:transactional:bounces"]
    assert ("Lane transactional: bounce rate 10.0% > 4.0% over 24 h (200 sent); the "
            "transactional lane is never paused: it keeps sending.") in outbox[0].body


@pytest.mark.parametrize(("complaints", "paused"), [(8, False), (9, True)])
def test_the_complaint_rate(complaints: int, paused: bool, outbox: list[Any]) -> None:
    sent("bulk", 10_000)
    tracked("bulk", complaints, event_type="complained", bounce="")

    minute_check()

    assert is_paused("bulk") is paused
    if paused:
        reason = "complaint rate 0.09% > 0.08% over 24 h (10,000 sent)"
        assert LaneState.objects.get(lane="bulk").pause_reason == reason
        assert alert_subjects(outbox) == ["[notifications] ALERT reputation:bulk:complaints"]
    else:
        assert alert_subjects(outbox) == []


def test_soft_bounces_do_not_count() -> None:
    sent("bulk", 100)
    tracked("bulk", 30, bounce="soft")
    tracked("bulk", 2)

    assert reputation.guard() == []
    assert lane_rate("bulk").hard_bounces == 2


def test_a_rejection_for_a_bad_address_counts_as_a_hard_bounce() -> None:
    sent("bulk", 100)
    tracked("bulk", 5, event_type="rejected")

    assert lane_rate("bulk").hard_bounces == 5
    assert is_paused("bulk") is False
    assert reputation.guard() != [] and is_paused("bulk")


def test_the_window_is_the_last_window_hours() -> None:
    sent("bulk", 100, ago=timedelta(hours=25))
    tracked("bulk", 10, sent_ago=timedelta(hours=25), received_ago=timedelta(hours=25))
    sent("bulk", 100, ago=timedelta(hours=1))
    tracked("bulk", 3, sent_ago=timedelta(hours=1), received_ago=timedelta(minutes=30))

    rate = lane_rate("bulk")

    assert (rate.sent, rate.hard_bounces) == (100, 3)
    assert reputation.guard() == []


def test_after_a_resume_only_fresh_evidence_counts() -> None:
    sent("bulk", 1_000, ago=timedelta(hours=3))
    tracked("bulk", 100, sent_ago=timedelta(hours=3), received_ago=timedelta(hours=2))
    assert reputation.guard() != []
    lane_resume(lane="bulk", user="ops", reason="list cleaned")
    resumed = timezone.now() - timedelta(hours=1)
    LaneState.objects.filter(lane="bulk").update(resumed_at=resumed)
    # Since the resume: 100 sent, 1 of them bounced, and late bounces of the old batch.
    sent("bulk", 100, ago=timedelta(minutes=30))
    tracked("bulk", 1, sent_ago=timedelta(minutes=30), received_ago=timedelta(minutes=10))
    tracked("bulk", 20, sent_ago=timedelta(hours=3), received_ago=timedelta(minutes=10))

    rate = lane_rate("bulk")

    assert (rate.sent, rate.hard_bounces, rate.window_start) == (100, 1, resumed)
    assert reputation.guard() == []
    assert not is_paused("bulk")


@pytest.mark.parametrize("off", ["BOUNCE_RATE", "COMPLAINT_RATE"])
def test_a_threshold_of_zero_turns_its_check_off(off: str, settings: Any,
                                                 outbox: list[Any]) -> None:
    settings.NOTIFY_DELIVERABILITY = {**settings.NOTIFY_DELIVERABILITY, off: 0.0}
    sent("bulk", 100)
    kind = "bounced" if off == "BOUNCE_RATE" else "complained"
    tracked("bulk", 50, event_type=kind, bounce="hard" if kind == "bounced" else "")

    minute_check()

    assert not is_paused("bulk")
    assert alert_subjects(outbox) == []
    # The other check still works.
    other = "complained" if off == "BOUNCE_RATE" else "bounced"
    tracked("bulk", 50, event_type=other, bounce="hard" if other == "bounced" else "")
    minute_check()
    assert is_paused("bulk")


def test_a_lane_paused_already_is_left_as_it_is() -> None:
    lane_pause(lane="bulk", user="ops", reason="maintenance")
    sent("bulk", 100)
    tracked("bulk", 10)

    assert reputation.guard() == []

    state = LaneState.objects.get(lane="bulk")
    assert (state.paused_by, state.pause_reason) == ("ops", "maintenance")
    assert AuditEntry.objects.filter(action=AuditAction.PAUSE).count() == 1


def test_a_failing_guard_does_not_stop_the_alerts(monkeypatch: pytest.MonkeyPatch,
                                                  caplog: Any) -> None:
    checked: list[bool] = []

    def broken(now: datetime | None = None, **kwargs: Any) -> list[str]:
        raise RuntimeError("boom")

    monkeypatch.setattr(tasks.reputation, "guard", broken)
    monkeypatch.setattr(tasks.alerts, "alerts_check", lambda: checked.append(True) or [])

    minute_check()

    assert checked == [True]
    assert "the reputation guard failed" in caplog.text


# --- per provider ---------------------------------------------------------------------------------

@pytest.fixture
def two_providers(settings: Any) -> None:
    settings.EMAIL_PROVIDERS = [{"NAME": name, "BACKEND": LOCMEM, "OPTIONS": {}}
                                for name in ("primary", "secondary")]


@pytest.mark.usefixtures("two_providers")
def test_one_providers_rate_pauses_bulk_when_the_lanes_does_not(settings: Any,
                                                                outbox: list[Any]) -> None:
    settings.NOTIFY_DELIVERABILITY = {**settings.NOTIFY_DELIVERABILITY, "MIN_VOLUME": 50}
    sent("bulk", 150, provider="primary")
    sent("bulk", 50, provider="secondary")
    sent("transactional", 40, provider="secondary")  # another lane
    tracked("bulk", 1, provider="primary")
    tracked("bulk", 5, provider="secondary")

    minute_check()

    found = {(r.provider, r.sent, r.hard_bounces) for r in reputation.rates_stored().rates
             if r.lane == "bulk"}
    assert found == {("", 200, 6), ("primary", 150, 1), ("secondary", 50, 5)}
    state = LaneState.objects.get(lane="bulk")
    assert state.paused
    assert state.pause_reason == "bounce rate via secondary 10.0% > 4.0% over 24 h (50 sent)"
    assert alert_subjects(outbox) == ["[notifications] ALERT reputation:bulk:secondary:bounces"]


@pytest.mark.usefixtures("two_providers")
def test_one_condition_is_one_alert_with_several_providers(outbox: list[Any]) -> None:
    """The lane's sum (5%) and the primary's own rate (10%) are both past 4%: one condition,
    judged per provider, so one alert and one pause reason."""
    sent("bulk", 100, provider="primary")
    sent("bulk", 100, provider="secondary")
    tracked("bulk", 10, provider="primary")

    minute_check()
    minute_check()

    assert alert_subjects(outbox) == ["[notifications] ALERT reputation:bulk:primary:bounces"]
    assert LaneState.objects.get(lane="bulk").pause_reason == (
        "bounce rate via primary 10.0% > 4.0% over 24 h (100 sent)")
    assert list(AlertState.objects.values_list("key", flat=True)) == [
        "reputation:bulk:primary:bounces"]


@pytest.mark.usefixtures("two_providers")
def test_a_providers_volume_comes_from_the_rollup_not_the_attempts() -> None:
    sent("bulk", 1_000, provider="primary")
    sent("bulk", 300, provider="secondary", ago=timedelta(minutes=3))
    sent("bulk", 200, provider="secondary", ago=timedelta(hours=25))  # out of the window
    tracked("bulk", 4, provider="primary")

    with CaptureQueriesContext(connection) as queries:
        found = {(r.provider, r.sent, r.hard_bounces) for r in reputation.rates()
                 if r.lane == "bulk"}

    assert found == {("", 1_300, 4), ("primary", 1_000, 4), ("secondary", 300, 0)}
    assert not [q for q in queries.captured_queries
                if DeliveryAttempt._meta.db_table in q["sql"]]


@pytest.mark.usefixtures("two_providers")
def test_rollup_rows_from_before_providers_bound_the_providers_window() -> None:
    """Rows from before the upgrade hold sends without their provider: counted from them, the
    primary would have 100 sends for its 10 bounces of older mail (10%) and pause bulk."""
    sent("bulk", 2_000, provider="", ago=timedelta(hours=2))
    tracked("bulk", 10, provider="primary", sent_ago=timedelta(hours=2),
            received_ago=timedelta(minutes=5))
    sent("bulk", 100, provider="primary", ago=timedelta(minutes=30))
    tracked("bulk", 1, provider="primary", sent_ago=timedelta(minutes=30),
            received_ago=timedelta(minutes=5))

    found = {r.provider: r for r in reputation.rates() if r.lane == "bulk"}

    assert (found[""].sent, found[""].hard_bounces) == (2_100, 11)
    primary = found["primary"]
    assert (primary.sent, primary.hard_bounces) == (100, 1)
    legacy_minute = minute_of(timezone.now() - timedelta(hours=2))
    assert primary.window_start == legacy_minute + timedelta(minutes=1)
    assert reputation.guard() == []


def test_with_one_provider_there_are_only_lane_rates() -> None:
    sent("bulk", 100)

    assert [(r.lane, r.provider) for r in reputation.rates()] == [
        ("transactional", ""), ("bulk", "")]


@pytest.mark.usefixtures("guard_settings")
def test_the_dashboard_shows_each_lanes_rates_and_flags_a_breach(client: Any) -> None:
    sent("bulk", 200)
    tracked("bulk", 10)  # 5% > 4%
    sent("transactional", 200)
    tracked("transactional", 2)  # 1%
    client.force_login(staff("olga", "operators"))
    minute_check()

    data = client.get(reverse("admin:notifications_message_dashboard_data")).json()
    page = client.get(reverse("admin:notifications_message_dashboard")).content.decode()

    rates = {r["lane"]: r for r in data["deliverability"]["rates"]}
    assert (rates["bulk"]["sent"], rates["bulk"]["hard_bounces"]) == (200, 10)
    assert rates["bulk"]["bounce_over"] and not rates["transactional"]["bounce_over"]
    assert rates["transactional"]["bounce_rate"] == pytest.approx(0.01)
    assert "5.00% ⚠" in page and "1.00%" in page
    assert "Computed by the minute check at" in page


def test_readers_get_the_rates_the_minute_check_stored(client: Any,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The dashboard (refreshed every few seconds per open browser) and the alerts read the
    rows the minute check stored: computing the rates is the minute check's alone."""
    sent("bulk", 200)
    tracked("bulk", 10)
    computed = timezone.now() - timedelta(seconds=90)
    reputation.rates_refresh(computed)  # the last minute check, 90 s ago
    tracked("bulk", 10)  # since then: the next minute check will see these

    def computing(now: datetime | None = None) -> list[reputation.Rate]:
        raise AssertionError("a reader computed the rates")

    monkeypatch.setattr(reputation, "rates", computing)
    client.force_login(staff("olga", "operators"))

    data = client.get(reverse("admin:notifications_message_dashboard_data")).json()
    page = client.get(reverse("admin:notifications_message_dashboard")).content.decode()
    keys = [c.key for c in firing_conditions()]

    deliverability = data["deliverability"]
    bulk = next(r for r in deliverability["rates"] if r["lane"] == "bulk")
    assert (bulk["sent"], bulk["hard_bounces"]) == (200, 10)
    assert datetime.fromisoformat(deliverability["rates_at"]) == computed
    assert deliverability["rates_age_seconds"] == pytest.approx(90, abs=5)
    assert "Computed by the minute check at" in page
    assert keys == ["reputation:bulk:bounces"]
    assert ReputationRate.objects.filter(lane="bulk", provider="", hard_bounces=10).exists()


def test_before_the_first_minute_check_the_dashboard_says_so(client: Any) -> None:
    sent("bulk", 200)
    tracked("bulk", 10)
    client.force_login(staff("olga", "operators"))

    data = client.get(reverse("admin:notifications_message_dashboard_data")).json()
    page = client.get(reverse("admin:notifications_message_dashboard")).content.decode()

    assert data["deliverability"]["rates"] == []
    assert data["deliverability"]["rates_at"] is None
    assert "Not computed yet" in page


@pytest.mark.usefixtures("two_providers")
def test_the_minute_check_forgets_a_provider_taken_out(settings: Any) -> None:
    sent("bulk", 100, provider="primary")
    minute_check()
    assert {r.provider for r in reputation.rates_stored().rates} == {"", "primary", "secondary"}

    settings.EMAIL_PROVIDERS = settings.EMAIL_PROVIDERS[:1]  # one provider left
    minute_check()

    stored = reputation.rates_stored()
    assert [(r.lane, r.provider) for r in stored.rates] == [("transactional", ""), ("bulk", "")]
