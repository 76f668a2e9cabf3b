"""The drain, run in-process against a fake Postmark on 127.0.0.1 through Anymail's real backend."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from notifications.delivery import claim_batch, drain_lane, message_id_for
from notifications.flow import Gate, ProviderFlow
from notifications.models import DeliveryAttempt, LaneMinute, LaneState, Message, Status
from notifications.services import notify
from notifications.sweeper import sweep_lane
from templates_app.models import TemplateVersion
from templates_app.services import template_version_create
from tests.fakes._common import most_in_one_second
from tests.fakes.postmark import FakePostmark

ORDER = {"order_id": 7, "total": "$5", "items": [{"name": "Tea", "qty": 1}]}

pytestmark = pytest.mark.usefixtures("demo", "no_wakeups")


@pytest.fixture
def postmark(settings: Any) -> Iterator[FakePostmark]:
    with FakePostmark() as fake:
        settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
        settings.ANYMAIL = {
            "POSTMARK_SERVER_TOKEN": fake.server_token,
            "POSTMARK_API_URL": fake.url,
            "REQUESTS_TIMEOUT": 0.5,
        }
        settings.NOTIFY = {
            **settings.NOTIFY, "RETRY_BASE_SECONDS": 0.0, "RETRY_CAP_SECONDS": 0.0,
            "BREAKER_PAUSE_SECONDS": 0.2,
        }
        yield fake


def order(to: str, **kw: Any) -> Message:
    return notify(event="order.placed", to=to, data=ORDER, **kw)


def drain(budget: float = 0.0) -> Any:
    return drain_lane("transactional", budget=budget if budget else 5.0)


def test_it_sends_through_anymail_with_a_stable_message_id_and_metadata(
    postmark: FakePostmark,
) -> None:
    message = order("ann@example.com")

    report = drain()

    message.refresh_from_db()
    assert (message.status, message.attempts, report.sent) == (Status.SENT, 1, 1)
    [received] = postmark.accepted
    assert received.message_id == message_id_for(message.pk)
    metadata = {"notification_id": str(message.pk), "notify_event": "order.placed"}
    assert received.data["Metadata"] == metadata
    assert received.data["Tag"] == "order.placed"
    assert message.provider_message_id == received.postmark_message_id
    [attempt] = message.delivery_attempts.all()
    assert (attempt.outcome, attempt.number) == ("sent", 1)


def test_it_renders_at_send_time_from_the_version_pinned_at_enqueue(outbox: list[Any]) -> None:
    message = order("ann@example.com")
    template_version_create(template=message.event_type.template, locale="en",
                            subject="NEW {{ order_id }}", html_body="<p>new</p>")

    drain()

    [email] = outbox
    assert email.subject == "Order 7 confirmed"
    assert "1 × Tea" in email.body  # the text part, derived from the HTML
    assert "[" not in email.subject and "<" not in email.body
    html, mimetype = email.alternatives[0]
    assert mimetype == "text/html" and "<b>7</b>" in html and "style=" in html  # CSS inlined


def test_a_message_that_fails_to_render_goes_to_the_dlq_and_the_rest_are_sent(
    outbox: list[Any],
) -> None:
    broken = order("broken@example.com")
    TemplateVersion.objects.filter(pk=broken.template_version_id).update(
        html_body="{% load secrets %}")  # as if saved before a rule tightened
    fine = notify(event="password.reset", to="ok@example.com", data={"reset_url": "https://x.io/r"})

    report = drain()

    broken.refresh_from_db()
    assert (broken.status, broken.dead_reason, report.dead, report.sent) == (
        Status.DEAD, "render_failed", 1, 1)
    assert "does not compile" in broken.last_error
    [attempt] = broken.delivery_attempts.all()
    assert (attempt.outcome, attempt.error_class) == ("permanent", "TemplateRenderError")
    assert [m.to for m in outbox] == [["ok@example.com"]]
    assert Message.objects.get(pk=fine.pk).status == Status.SENT


def test_it_sends_the_most_urgent_first(outbox: list[Any]) -> None:
    order("second@example.com")
    notify(event="password.reset", to="first@example.com", data={"reset_url": "https://x.io/r"})
    order("third@example.com")

    drain_lane("transactional", budget=5.0, batch_size=1)

    assert [m.to for m in outbox] == [["first@example.com"], ["second@example.com"],
                                      ["third@example.com"]]


def test_it_retries_transient_errors_then_sends(postmark: FakePostmark) -> None:
    postmark.script("ann@example.com", ["503", "500"])
    message = order("ann@example.com")

    drain(budget=3.0)

    message.refresh_from_db()
    assert (message.status, message.attempts) == (Status.SENT, 3)
    outcomes = list(message.delivery_attempts.values_list("outcome", "error_code"))
    assert outcomes == [("transient", "503"), ("transient", "500"), ("sent", "")]
    assert postmark.count_accepted_by_message_id() == {message_id_for(message.pk): 1}


def test_it_waits_at_least_retry_after(postmark: FakePostmark) -> None:
    postmark.script("ann@example.com", ["429:120"])
    message = order("ann@example.com")
    before = timezone.now()

    drain(budget=0.5)

    message.refresh_from_db()
    assert message.status == Status.RETRY
    assert message.next_attempt_at >= before + timedelta(seconds=120)
    assert "429" in message.last_error


def test_it_dead_letters_a_permanent_rejection_at_once(postmark: FakePostmark) -> None:
    postmark.script("ann@example.com", ["422"])
    message = order("ann@example.com")

    drain()

    message.refresh_from_db()
    assert (message.status, message.dead_reason, message.attempts) == (
        Status.DEAD, "permanent_error", 1)
    assert "AnymailRecipientsRefused" in message.last_error


def test_it_dead_letters_after_max_attempts(postmark: FakePostmark) -> None:
    postmark.script("ann@example.com", ["503"] * 10)
    message = order("ann@example.com")  # order.placed allows 8 attempts

    drain(budget=4.0)

    message.refresh_from_db()
    assert (message.status, message.dead_reason, message.attempts) == (
        Status.DEAD, "max_attempts", 8)
    assert message.delivery_attempts.count() == 8
    assert postmark.accepted == []


def test_it_dead_letters_an_expired_message_without_sending_it(postmark: FakePostmark) -> None:
    message = notify(event="password.reset", to="ann@example.com",
                     data={"reset_url": "https://x.io/r"})
    Message.objects.filter(pk=message.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    drain()

    message.refresh_from_db()
    assert (message.status, message.dead_reason) == (Status.DEAD, "expired")
    assert postmark.requests == []


def test_it_records_a_timeout_as_unknown_and_retries_with_the_same_message_id(
    postmark: FakePostmark,
) -> None:
    postmark.script("ann@example.com", ["hang:1.5"])
    message = order("ann@example.com")

    drain(budget=3.0)

    message.refresh_from_db()
    assert message.status == Status.SENT
    outcomes = list(message.delivery_attempts.values_list("outcome", flat=True))
    assert outcomes == ["unknown", "sent"]
    ids = {r.message_id for r in postmark.requests_for("ann@example.com")}
    assert ids == {message_id_for(message.pk)}  # a provider can dedupe the retry


def test_it_treats_a_connection_reset_as_unknown(postmark: FakePostmark) -> None:
    postmark.script("ann@example.com", ["reset"])
    message = order("ann@example.com")

    drain(budget=3.0)

    message.refresh_from_db()
    assert message.status == Status.SENT
    assert list(message.delivery_attempts.values_list("outcome", flat=True)) == ["unknown", "sent"]


def test_it_stops_burning_attempts_while_the_provider_is_down(
    postmark: FakePostmark, settings: Any,
) -> None:
    settings.NOTIFY = {**settings.NOTIFY, "BREAKER_MIN_CALLS": 5}
    postmark.set_global_mode("503")
    messages = [order(f"u{n}@example.com") for n in range(12)]

    drain_lane("transactional", budget=0.1)

    rows = Message.objects.filter(pk__in=[m.pk for m in messages])
    tried = rows.filter(attempts=1).count()
    untouched = rows.filter(attempts=0, status=Status.RETRY).count()
    # The window stays at one send while every send fails: the breaker opens at its 5 calls.
    assert (tried, untouched) == (5, 7)
    assert "circuit breaker" in rows.filter(attempts=0).first().last_error


def test_two_claims_never_share_a_message(outbox: list[Any]) -> None:
    for n in range(5):
        order(f"u{n}@example.com")

    first = claim_batch("transactional", 3)
    second = claim_batch("transactional", 3)

    assert len(first) == 3 and len(second) == 2
    assert not {m.pk for m in first} & {m.pk for m in second}
    assert claim_batch("transactional", 3) == []


def test_the_sweeper_requeues_an_expired_lease_and_wakes_the_lane(
    outbox: list[Any], no_wakeups: list[str]
) -> None:
    message = order("ann@example.com")
    [claimed] = claim_batch("transactional", 10)
    Message.objects.filter(pk=claimed.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    LaneState.objects.filter(lane="transactional").update(wake_pending=True)  # the lost task
    no_wakeups.clear()

    report = sweep_lane("transactional")

    message.refresh_from_db()
    assert (report.requeued, message.status, message.attempts) == (1, Status.RETRY, 1)
    assert no_wakeups == ["transactional"]
    attempt = DeliveryAttempt.objects.get(message=message)
    assert attempt.outcome == "lease_expired"

    drain()
    message.refresh_from_db()
    assert (message.status, message.attempts) == (Status.SENT, 2)
    assert len(outbox) == 1


def test_the_sweeper_dead_letters_a_lost_last_attempt(outbox: list[Any]) -> None:
    message = order("ann@example.com")
    Message.objects.filter(pk=message.pk).update(attempts=7)
    claim_batch("transactional", 10)
    Message.objects.filter(pk=message.pk).update(lease_until=timezone.now() - timedelta(seconds=1))

    sweep_lane("transactional")

    message.refresh_from_db()
    assert (message.status, message.dead_reason) == (Status.DEAD, "max_attempts")
    # ... and the dashboard's DLQ growth (the rollup) counts it.
    assert list(LaneMinute.objects.values_list("lane", "dead")) == [("transactional", 1)]


def test_a_late_worker_cannot_overwrite_a_message_the_sweeper_took_back(outbox: list[Any]) -> None:
    from notifications.delivery import Attempted, record_outcomes
    from notifications.errors import SendResult
    from notifications.models import Outcome

    message = order("ann@example.com")
    [claimed] = claim_batch("transactional", 10)
    Message.objects.filter(pk=message.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    sweep_lane("transactional")
    [reclaimed] = claim_batch("transactional", 10)

    stale = record_outcomes([Attempted(claimed, SendResult(Outcome.SENT), timezone.now(), 1)],
                            claimed.lease_token)

    assert stale.sent == 0
    message.refresh_from_db()
    assert message.status == Status.PROCESSING
    assert message.lease_token == reclaimed.lease_token


def test_a_connection_lost_mid_chunk_requeues_the_unsent_rest_without_charging_them(
    settings: Any,
) -> None:
    from tests.fakes.smtp import FakeSMTP

    with FakeSMTP() as smtp:
        settings.EMAIL_BACKEND = "notifications.backends.smtp.SMTPBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = smtp.host, smtp.port, 2
        settings.NOTIFY = {**settings.NOTIFY, "RETRY_BASE_SECONDS": 0.0,
                           "RETRY_CAP_SECONDS": 0.0}
        smtp.script("u2@example.com", ["drop"])
        messages = [order(f"u{n}@example.com") for n in range(6)]

        drain(budget=3.0)

        rows = {m.to_email: m for m in Message.objects.filter(pk__in=[m.pk for m in messages])}
        assert {m.status for m in rows.values()} == {Status.SENT}
        # The dropped one was charged (it may have arrived); the ones after it were not.
        assert rows["u2@example.com"].attempts == 2
        assert [rows[f"u{n}@example.com"].attempts for n in (0, 1, 3, 4, 5)] == [1] * 5
        assert set(smtp.count_by_message_id().values()) == {1}
        assert len(smtp.received) == 6


def test_a_renamed_event_type_tags_the_next_email_with_its_new_key(outbox: list[Any]) -> None:
    """The drain's event-key lookup is in the one cache, cleared when an event type is saved
    (it used to be a dict of its own that nothing ever cleared)."""
    from notifications.models import EventType

    order("ann@example.com")
    drain()
    event_type = EventType.objects.get(key="order.placed")
    event_type.key = "order.confirmed"
    event_type.save()
    notify(event="order.confirmed", to="bob@example.com", data=ORDER)
    drain()

    assert [(m.to, m.tags, m.metadata["notify_event"]) for m in outbox] == [
        (["ann@example.com"], ["order.placed"], "order.placed"),
        (["bob@example.com"], ["order.confirmed"], "order.confirmed"),
    ]


# --- providers with real latency ------------------------------------------------------------

def test_it_keeps_up_to_the_concurrency_in_flight_over_reused_connections(
    postmark: FakePostmark, settings: Any,
) -> None:
    settings.NOTIFY = {**settings.NOTIFY, "SEND_CONCURRENCY": 8}
    postmark.latency = 0.2
    messages = [order(f"u{n}@example.com") for n in range(20)]

    report = drain()

    assert report.sent == 20
    assert postmark.max_in_flight == 8
    accepted = postmark.count_accepted_by_message_id()
    assert all(accepted[message_id_for(m.pk)] == 1 for m in messages)
    # Each attempt is timed on its own (not a share of the round): the provider's 200 ms.
    durations = DeliveryAttempt.objects.values_list("duration_ms", flat=True)
    assert min(durations) >= 200
    # Keep-alive: a connection per sending thread (and the drain's own), not one per email.
    assert postmark.connections_opened <= 9


def test_it_starts_no_send_after_its_deadline_and_hands_the_rest_back_refunded(
    postmark: FakePostmark, settings: Any, no_wakeups: list[str],
) -> None:
    settings.NOTIFY = {**settings.NOTIFY, "SEND_CONCURRENCY": 2}
    postmark.latency = 0.3
    messages = [order(f"u{n}@example.com") for n in range(10)]

    started = time.time()
    report = drain_lane("transactional", budget=0.5)

    # Rounds start at ~0 s (one send: rounds start small) and ~0.3 s (two); the third would
    # start after the 0.5 s deadline.
    assert (report.claimed, report.sent, report.released) == (10, 3, 7)
    assert all(r.time < started + 0.5 for r in postmark.requests)
    rows = {m.pk: m for m in Message.objects.filter(pk__in=[m.pk for m in messages])}
    back = [m for m in rows.values() if m.status == Status.RETRY]
    assert len(back) == 7
    assert {(m.attempts, m.lease_until) for m in back} == {(0, None)}  # the claim's refunded
    assert all(m.next_attempt_at <= timezone.now() for m in back)  # due again at once
    assert all("budget" in m.last_error for m in back)
    assert not DeliveryAttempt.objects.filter(message_id__in=[m.pk for m in back]).exists()
    assert no_wakeups[-1:] == ["transactional"]  # the next drain starts now, not at a sweep

    drain()
    assert set(Message.objects.values_list("status", flat=True)) == {Status.SENT}
    assert sum(postmark.count_accepted_by_message_id().values()) == 10


def test_the_local_outbox_gets_one_file_per_sending_connection_and_no_empty_ones(
    settings: Any, tmp_path: Any,
) -> None:
    """make run's default backend writes files: a drain must not leave empty ones behind."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    settings.EMAIL_FILE_PATH = str(tmp_path)
    for n in range(3):
        order(f"u{n}@example.com")

    assert drain().sent == 3

    files = list(tmp_path.iterdir())
    assert files and all(f.stat().st_size > 0 for f in files)
    assert sum(f.read_text().count("Subject: Order 7 confirmed") for f in files) == 3



def test_a_provider_rate_spaces_the_sends_of_a_concurrent_drain(
    postmark: FakePostmark, settings: Any,
) -> None:
    settings.NOTIFY = {**settings.NOTIFY, "SEND_CONCURRENCY": 8, "PROVIDER_RATE_PER_SECOND": 20}
    for n in range(30):
        order(f"u{n}@example.com")

    assert drain().sent == 30

    # The send starts the limiter schedules (taken on the send thread after its slot), not the
    # fake's receipt times: on a loaded machine the fake's threads run late and bunch receipts.
    # The provider-side check is the 4-worker e2e test's.
    times = [a.started_at.timestamp() for a in DeliveryAttempt.objects.all()]
    assert len(times) == 30 and len(postmark.requests) == 30
    assert most_in_one_second(times) <= 21  # the rate, +5%
    assert max(times) - min(times) >= 29 / 20 - 0.05


def test_throttling_is_not_a_breaker_failure(postmark: FakePostmark, settings: Any) -> None:
    """Ten 429s in a row would open a 5-call breaker if they counted: nothing is held back."""
    settings.NOTIFY = {**settings.NOTIFY, "BREAKER_MIN_CALLS": 5}
    messages = [order(f"u{n}@example.com") for n in range(10)]
    for m in messages:
        postmark.script(m.to_email, ["429:0"])  # no hold: the test is about the breaker

    report = drain_lane("transactional", budget=3)

    assert report.released == 0  # the breaker never held anything back
    throttled = DeliveryAttempt.objects.filter(message__in=[m.pk for m in messages],
                                               error_code="429")
    assert sorted(throttled.values_list("message_id", flat=True)) == sorted(m.pk for m in messages)
    assert ProviderFlow("default").permit() is Gate.ALLOW


def test_a_429_holds_every_send_to_that_provider_for_its_retry_after(
    postmark: FakePostmark, settings: Any,
) -> None:
    """The drain that got the 429 starts nothing for Retry-After seconds, and the hold is shared:
    another drain (another worker) asking now is told to wait too."""
    settings.NOTIFY = {**settings.NOTIFY, "SEND_CONCURRENCY": 1}
    postmark.script("u0@example.com", ["429:1"])
    for n in range(3):
        order(f"u{n}@example.com")

    drain_lane("transactional", budget=0.3)

    other = ProviderFlow("default")
    assert other.permit() is Gate.ALLOW  # the provider is up ...
    assert 0.3 < other.hold_for <= 1.0  # ... and nobody may send to it yet
    [first] = postmark.requests  # the drain ended, within its budget, without sending more
    drain_lane("transactional", budget=5)
    later = [r.time for r in postmark.requests[1:]]
    assert len(later) == 3 and min(later) - first.time >= 0.95


def test_batches_claimed_while_sends_are_in_flight_are_each_recorded_against_their_claim(
    postmark: FakePostmark, settings: Any,
) -> None:
    """Refills are claims of their own (own lease token): each is recorded against its claim."""
    settings.NOTIFY = {**settings.NOTIFY, "SEND_CONCURRENCY": 4}
    postmark.latency = 0.05
    messages = [order(f"u{n}@example.com") for n in range(23)]

    report = drain_lane("transactional", budget=10, batch_size=5)

    assert (report.claimed, report.sent, report.batches) == (23, 23, 5)
    rows = Message.objects.filter(pk__in=[m.pk for m in messages])
    assert {(m.status, m.attempts) for m in rows} == {(Status.SENT, 1)}
    assert len({m.lease_token for m in rows}) == 5
    assert DeliveryAttempt.objects.filter(message__in=rows).count() == 23
    accepted = postmark.count_accepted_by_message_id()
    assert all(accepted[message_id_for(m.pk)] == 1 for m in messages)
    assert postmark.max_in_flight == 4


def test_attempt_rows_store_every_field_exactly() -> None:
    """insert_attempts (one unnest INSERT on PostgreSQL, the ORM elsewhere) writes what it is
    given: awkward text, an empty provider, several rows at once, none at all."""
    from notifications.inserts import ATTEMPT_COLUMNS, insert_attempts

    first, second = order("ann@example.com"), order("bob@example.com")
    started = timezone.now() - timedelta(seconds=3)
    rows = [
        (first.pk, 1, started, 52, "sent", "", "", "", "pm-1", "primary", "host:1"),
        (first.pk, 2, started + timedelta(seconds=1), 0, "transient", "ConnectionError",
         "503", "Tab\there\nnew line \\ back \\N \"quoted\" ü 🎉 {x}", "", "", "host:2"),
        (second.pk, 1, started, 70_000, "unknown", "x" * 200, "y" * 40, "", "", "secondary",
         "w" * 100),
    ]
    insert_attempts([])
    insert_attempts(rows)

    stored = list(DeliveryAttempt.objects.order_by("message_id", "number")
                  .values_list(*ATTEMPT_COLUMNS))
    assert stored == rows


@pytest.mark.parametrize("one_statement", [True, False], ids=["one statement", "transaction"])
def test_a_chunk_all_sent_records_the_same_rows_either_way(
    one_statement: bool, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On PostgreSQL a chunk whose every email was sent is recorded in one statement
    (transitions.mark_sent_recorded), any other in a transaction of several: both write the same
    message fields, attempt rows, /metrics totals and rollup row, and neither counts a message
    whose lease was lost as sent."""
    from django.db import connection

    from notifications import delivery, transitions
    from notifications.delivery import Attempted, record_outcomes
    from notifications.errors import SendResult
    from notifications.models import MetricTotal, Outcome

    if one_statement and connection.vendor != "postgresql":
        pytest.skip("the one-statement record is PostgreSQL's")
    statements: list[int] = []
    if one_statement:
        real = transitions.mark_sent_recorded
        monkeypatch.setattr(transitions, "mark_sent_recorded",
                            lambda *a, **k: statements.append(1) or real(*a, **k))
    else:
        monkeypatch.setattr(delivery, "_in_one_statement", lambda outcomes: False)
    for to in ("ann@example.com", "bob@example.com", "cy@example.com"):
        order(to)
    first, second, lost = claim_batch("transactional", 10)
    Message.objects.filter(pk=lost.pk).update(lease_token=None)  # taken back meanwhile
    started = timezone.now()
    outcomes = [
        Attempted(first, SendResult(Outcome.SENT, provider_message_id="esp-1"), started, 40,
                  "primary"),
        Attempted(second, SendResult(Outcome.SENT, provider_message_id=message_id_for(second.pk)),
                  started, 300, "primary"),
        Attempted(lost, SendResult(Outcome.SENT, provider_message_id="esp-3"), started, 60,
                  "primary"),
    ]

    report = record_outcomes(outcomes, first.lease_token)

    assert report.sent == 2 and len(statements) == int(one_statement)
    rows = {m.pk: m for m in Message.objects.filter(pk__in=[first.pk, second.pk, lost.pk])}
    assert [(rows[m.pk].status, rows[m.pk].provider, rows[m.pk].provider_message_id,
             rows[m.pk].lease_until, rows[m.pk].sent_at is not None) for m in (first, second)] == [
        (Status.SENT, "primary", "esp-1", None, True), (Status.SENT, "primary", "", None, True)]
    assert rows[lost.pk].status == Status.PROCESSING
    assert list(DeliveryAttempt.objects.order_by("message_id").values_list(
        "message_id", "number", "duration_ms", "outcome", "provider_message_id", "provider")) == [
        (first.pk, 1, 40, "sent", "esp-1", "primary"),
        (second.pk, 1, 300, "sent", message_id_for(second.pk), "primary"),
        (lost.pk, 1, 60, "sent", "esp-3", "primary")]
    totals = {(name, label): value for name, label, value in MetricTotal.objects.filter(
        lane="transactional", provider="primary").values_list("name", "label", "value")}
    assert totals.pop(("sent", "")) == 2  # what this claim moved
    assert totals.pop(("send_ms", "sum")) == 400
    assert (totals.pop(("send_ms", "50")), totals.pop(("send_ms", "100")),
            totals.pop(("send_ms", "500"))) == (1, 1, 1)
    queued = [key for key in totals if key[0] == "queue_ms" and key[1] != "sum"]
    assert sum(totals.pop(key) for key in queued) == 3  # one observation per email sent
    totals.pop(("queue_ms", "sum"), None)  # 0 ms in all is not written
    assert totals == {}
    assert list(LaneMinute.objects.values_list("lane", "provider", "sent", "failed", "dead")) == [
        ("transactional", "primary", 2, 0, 0)]

    # A second chunk adds to the same rows (the upserts' UPDATE side).
    order("dee@example.com")
    [fourth] = claim_batch("transactional", 10)
    record_outcomes([Attempted(fourth, SendResult(Outcome.SENT, provider_message_id="esp-4"),
                               started, 40, "primary")], fourth.lease_token)
    assert len(statements) == 2 * int(one_statement)
    assert MetricTotal.objects.get(lane="transactional", provider="primary", name="sent",
                                   label="").value == 3
    assert MetricTotal.objects.get(lane="transactional", provider="primary", name="send_ms",
                                   label="sum").value == 440
    assert list(LaneMinute.objects.values_list("provider", "sent")) == [("primary", 3)]
