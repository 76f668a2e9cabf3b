"""Provider failover: when the primary's breaker opens the next provider sends, except what the
primary may already have sent (an unknown outcome pins a message to its provider)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db.models import Sum
from django.utils import timezone

from notifications.delivery import drain_lane, message_id_for
from notifications.models import DeliveryAttempt, LaneMinute, Message, Status
from notifications.services import notify
from tests.fakes.postmark import FakePostmark

ORDER = {"order_id": 7, "total": "$5", "items": [{"name": "Tea", "qty": 1}]}
POSTMARK = "anymail.backends.postmark.EmailBackend"

pytestmark = pytest.mark.usefixtures("demo", "no_wakeups")


@pytest.fixture
def fakes(settings: Any) -> Iterator[tuple[FakePostmark, FakePostmark]]:
    with FakePostmark("primary-token") as primary, FakePostmark("secondary-token") as secondary:
        settings.EMAIL_PROVIDERS = [
            {"NAME": name, "BACKEND": POSTMARK,
             "OPTIONS": {"server_token": fake.server_token, "api_url": fake.url}}
            for name, fake in (("primary", primary), ("secondary", secondary))
        ]
        settings.ANYMAIL = {"REQUESTS_TIMEOUT": 0.5}
        settings.NOTIFY = {
            **settings.NOTIFY, "RETRY_BASE_SECONDS": 0.0, "RETRY_CAP_SECONDS": 0.0,
            "BREAKER_PAUSE_SECONDS": 0.3, "BREAKER_MIN_CALLS": 5, "SEND_CONCURRENCY": 4,
        }
        yield primary, secondary


def order(to: str) -> Message:
    return notify(event="order.placed", to=to, data=ORDER)


def test_it_sends_through_the_primary_while_it_is_healthy(
    fakes: tuple[FakePostmark, FakePostmark],
) -> None:
    primary, secondary = fakes
    messages = [order(f"u{n}@example.com") for n in range(5)]

    assert drain_lane("transactional", budget=5).sent == 5

    assert len(primary.accepted) == 5 and secondary.requests == []
    rows = Message.objects.filter(pk__in=[m.pk for m in messages])
    assert set(rows.values_list("provider", flat=True)) == {"primary"}
    assert set(DeliveryAttempt.objects.values_list("provider", flat=True)) == {"primary"}


def test_when_the_primary_is_down_the_secondary_sends_and_the_log_says_who_sent_what(
    fakes: tuple[FakePostmark, FakePostmark], settings: Any,
) -> None:
    primary, secondary = fakes
    settings.NOTIFY = {**settings.NOTIFY, "BREAKER_PAUSE_SECONDS": 10.0}  # no probe meanwhile
    primary.set_global_mode("503")
    messages = [order(f"u{n}@example.com") for n in range(30)]

    report = drain_lane("transactional", budget=5)

    assert report.sent == 30
    assert len(primary.requests) == 5  # its breaker opened at the minimum calls, all failed
    accepted = secondary.count_accepted_by_message_id()
    assert [accepted[message_id_for(m.pk)] for m in messages] == [1] * 30
    rows = Message.objects.filter(pk__in=[m.pk for m in messages])
    assert {(m.status, m.provider) for m in rows} == {(Status.SENT, "secondary")}
    assert max(m.attempts for m in rows) == 2
    log = list(DeliveryAttempt.objects.values_list("provider", "outcome"))
    assert sorted(set(log)) == [("primary", "transient"), ("secondary", "sent")]
    assert log.count(("primary", "transient")) == 5
    # The rollup counts per provider (the reputation guard's volume; the minute may turn).
    rolled = (LaneMinute.objects.filter(lane="transactional").values("provider")
              .annotate(s=Sum("sent"), f=Sum("failed"), d=Sum("dead")).order_by("provider"))
    assert [(r["provider"], r["s"], r["f"], r["d"]) for r in rolled] == [
        ("primary", 0, 5, 0), ("secondary", 30, 0, 0)]


def test_a_message_whose_outcome_on_the_primary_is_unknown_never_goes_to_another_provider(
    fakes: tuple[FakePostmark, FakePostmark], settings: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    primary, secondary = fakes
    primary.script("x@example.com", ["hang:2"])  # the primary got it; the client timed out
    x = order("x@example.com")
    settings.NOTIFY = {**settings.NOTIFY, "RETRY_BASE_SECONDS": 60.0, "RETRY_CAP_SECONDS": 60.0}
    with monkeypatch.context() as patched:
        # The whole 60 s, not full jitter's uniform(0, 60): a retry due within the drain's
        # budget is tried by the same drain (about 1 run in 100 did, and failed below).
        patched.setattr("notifications.delivery.random.uniform", lambda low, high: high)
        drain_lane("transactional", budget=1)
    x.refresh_from_db()
    assert (x.status, x.provider) == (Status.RETRY, "primary")
    # Its backoff passes.
    Message.objects.filter(pk=x.pk).update(next_attempt_at=timezone.now())
    settings.NOTIFY = {**settings.NOTIFY, "RETRY_BASE_SECONDS": 0.0, "RETRY_CAP_SECONDS": 0.0}

    # The primary goes down: its breaker opens and the others fail over; x waits for it.
    primary.set_global_mode("503")
    others = [order(f"u{n}@example.com") for n in range(10)]
    drain_lane("transactional", budget=1.5)
    assert set(Message.objects.filter(pk__in=[m.pk for m in others])
               .values_list("status", flat=True)) == {Status.SENT}
    x.refresh_from_db()
    assert (x.status, x.provider) == (Status.RETRY, "primary")

    # The primary recovers: after the pause a probe sends x through it, and nowhere else.
    primary.set_global_mode(None)
    drain_lane("transactional", budget=3)

    x.refresh_from_db()
    assert (x.status, x.provider) == (Status.SENT, "primary")
    assert secondary.requests_for("x@example.com") == []
    assert len(primary.accepted_for("x@example.com")) == 1
    assert [a.provider for a in x.delivery_attempts.all()] == ["primary"] * x.attempts
