"""GET /metrics: who may read it, and that its figures are the database's, through real drains."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from notifications.delivery import claim_batch, drain_lane
from notifications.models import Message, MetricTotal, Status
from notifications.services import notify
from notifications.sweeper import sweep_lane
from project.env import parse_networks
from tests.fakes.postmark import FakePostmark

ORDER = {"order_id": 7, "total": "$5", "items": [{"name": "Tea", "qty": 1}]}

pytestmark = pytest.mark.usefixtures("demo", "no_wakeups")


def scrape(client: Client, **headers: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of one scrape."""
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def order(to: str) -> Message:
    return notify(event="order.placed", to=to, data=ORDER)


# --- access ------------------------------------------------------------------------------------

def test_loopback_reads_it_and_others_are_refused(client: Client) -> None:
    assert client.get("/metrics").status_code == 200  # the test client is 127.0.0.1
    assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 200
    refused = client.get("/metrics", REMOTE_ADDR="10.1.2.3")
    assert refused.status_code == 403
    assert b"NOTIFY_METRICS_TOKEN" in refused.content
    assert client.post("/metrics").status_code == 405


def test_a_bearer_token_opens_it_from_anywhere_and_a_wrong_one_is_refused(
    client: Client, settings: Any,
) -> None:
    settings.NOTIFY_METRICS = {**settings.NOTIFY_METRICS, "TOKEN": "s3cret"}
    far = {"REMOTE_ADDR": "203.0.113.9"}
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret", **far).status_code == 200
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3crex", **far)
    assert wrong.status_code == 401
    assert wrong["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", HTTP_AUTHORIZATION="Basic czNjcmV0", **far).status_code == 401
    assert client.get("/metrics", **far).status_code == 401
    # With a token, loopback needs it too: behind a reverse proxy on the same host every
    # request comes from 127.0.0.1.
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer nope").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret").status_code == 200


def test_without_a_token_a_forwarded_request_is_refused_and_mapped_addresses_match(
    client: Client,
) -> None:
    assert client.get("/metrics", HTTP_X_FORWARDED_FOR="203.0.113.9").status_code == 403
    assert client.get("/metrics", HTTP_FORWARDED="for=203.0.113.9").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="::ffff:127.0.0.1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="fe80::1%eth0").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="not-an-address").status_code == 403


def test_the_allow_list_takes_networks(client: Client, settings: Any) -> None:
    settings.NOTIFY_METRICS = {**settings.NOTIFY_METRICS,
                               "ALLOW": parse_networks("X", "10.0.0.0/8, 192.0.2.7")}
    assert client.get("/metrics", REMOTE_ADDR="10.200.0.1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="192.0.2.7").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="192.0.2.8").status_code == 403
    assert client.get("/metrics").status_code == 403  # loopback is no longer listed


def test_a_bad_allow_list_refuses_to_start_with_the_variable_named() -> None:
    with pytest.raises(ImproperlyConfigured, match="NOTIFY_METRICS_ALLOW.*'10.0.0.300'"):
        parse_networks("NOTIFY_METRICS_ALLOW", "127.0.0.1, 10.0.0.300")
    assert parse_networks("NOTIFY_METRICS_ALLOW", " ") == ()


def test_a_database_outage_answers_503_not_500(client: Client, monkeypatch: Any) -> None:
    def down() -> None:
        raise DatabaseError("connection refused")

    monkeypatch.setattr("notifications.selectors.exact_counts", down)
    response = client.get("/metrics")
    assert response.status_code == 503
    assert b"database" in response.content


# --- figures -----------------------------------------------------------------------------------

def test_queue_gauges_are_the_tables(client: Client) -> None:
    old = order("old@example.com")
    Message.objects.filter(pk=old.pk).update(next_attempt_at=timezone.now() - timedelta(minutes=7))
    order("new@example.com")
    dead = order("dead@example.com")
    Message.objects.filter(pk=dead.pk).update(status=Status.DEAD, dead_reason="max_attempts")
    notify(event="marketing.newsletter", to="n@example.com",
           data={"headline": "Hi", "body": "News"})

    samples = scrape(client)

    assert value(samples, "notify_queue_messages", lane="transactional", status="pending") == 2
    assert value(samples, "notify_queue_messages", lane="transactional", status="dead") == 1
    assert value(samples, "notify_queue_messages", lane="bulk", status="pending") == 1
    assert value(samples, "notify_dlq_messages", lane="transactional") == 1
    assert value(samples, "notify_queue_due_messages", lane="transactional") == 2
    age = value(samples, "notify_queue_oldest_due_age_seconds", lane="transactional")
    assert 7 * 60 <= age < 7 * 60 + 30
    assert value(samples, "notify_lane_paused", lane="bulk") == 0
    assert value(samples, "notify_provider_breaker_state", provider="default",
                 state="closed") == 1


def test_counters_and_histograms_count_what_the_drains_recorded(
    client: Client, postmark: FakePostmark,
) -> None:
    postmark.script("retry@example.com", ["503"])
    postmark.script("refused@example.com", ["422"])
    for to in ("a@example.com", "b@example.com", "retry@example.com", "refused@example.com"):
        order(to)

    drain_lane("transactional", budget=3.0)

    assert Message.objects.filter(status=Status.SENT).count() == 3
    samples = scrape(client)
    lane = {"lane": "transactional", "provider": "default"}
    assert value(samples, "notify_sent_total", **lane) == 3
    assert value(samples, "notify_failed_total", outcome="transient", **lane) == 1
    assert value(samples, "notify_failed_total", outcome="permanent", **lane) == 1
    assert value(samples, "notify_retried_total", **lane) == 1
    assert value(samples, "notify_dead_total", reason="permanent_error", **lane) == 1
    # Every request is a send duration; every sent message a time from enqueue to sent.
    assert value(samples, "notify_send_duration_seconds_count", **lane) == 5
    assert value(samples, "notify_send_duration_seconds_bucket", le="+Inf", **lane) == 5
    assert value(samples, "notify_send_duration_seconds_sum", **lane) > 0
    assert value(samples, "notify_enqueue_to_sent_seconds_count", **lane) == 3
    assert value(samples, "notify_enqueue_to_sent_seconds_bucket", le="60.0", **lane) == 3
    # Buckets are cumulative.
    bounds = sorted((float(dict(k[1])["le"]), v) for k, v in samples.items()
                    if k[0] == "notify_send_duration_seconds_bucket")
    assert [v for _, v in bounds] == sorted(v for _, v in bounds)


def test_counters_outlive_the_rows_they_counted(client: Client, postmark: FakePostmark) -> None:
    order("a@example.com")
    drain_lane("transactional", budget=2.0)
    Message.objects.all().delete()  # as retention will

    samples = scrape(client)

    assert value(samples, "notify_sent_total", lane="transactional", provider="default") == 1


def test_the_sweeper_counts_lost_leases(client: Client, outbox: list[Any]) -> None:
    retried, dead = order("a@example.com"), order("b@example.com")
    Message.objects.filter(pk=dead.pk).update(attempts=7)
    claim_batch("transactional", 10)
    Message.objects.filter(pk__in=[retried.pk, dead.pk]).update(
        lease_until=timezone.now() - timedelta(seconds=1))

    sweep_lane("transactional")

    samples = scrape(client)
    lane = {"lane": "transactional", "provider": ""}
    assert value(samples, "notify_failed_total", outcome="lease_expired", **lane) == 2
    assert value(samples, "notify_retried_total", **lane) == 1
    assert value(samples, "notify_dead_total", reason="max_attempts", **lane) == 1


def test_a_scrape_is_a_few_queries_whatever_the_volume(
    client: Client, postmark: FakePostmark, django_assert_max_num_queries: Any,
) -> None:
    for i in range(30):
        order(f"u{i}@example.com")
    drain_lane("transactional", budget=3.0)
    assert MetricTotal.objects.count() < 40

    with django_assert_max_num_queries(8):
        client.get("/metrics")


# --- structured logs -----------------------------------------------------------------------------

def test_each_state_change_and_chunk_is_one_structured_log_line(
    postmark: FakePostmark, caplog: Any,
) -> None:
    postmark.script("refused@example.com", ["422"])
    sent, refused = order("a@example.com"), order("refused@example.com")

    with caplog.at_level("INFO", logger="notifications.events"):
        drain_lane("transactional", budget=2.0)

    by_message = {r.message_id: r for r in caplog.records if r.msg.startswith("message.")}
    assert by_message[sent.pk].msg == "message.sent"
    assert (by_message[sent.pk].lane, by_message[sent.pk].provider,
            by_message[sent.pk].outcome) == ("transactional", "default", "sent")
    assert by_message[refused.pk].msg == "message.dead"
    assert (by_message[refused.pk].outcome, by_message[refused.pk].dead_reason,
            by_message[refused.pk].error_code) == ("permanent", "permanent_error",
                                                    "recipient_refused")
    chunks = [r for r in caplog.records if r.msg == "drain.chunk"]
    assert sum(r.messages for r in chunks) == 2
    assert sum(r.sent for r in chunks) == 1 and sum(r.dead for r in chunks) == 1


def test_the_json_format_writes_the_fields_as_keys_and_text_as_key_value() -> None:
    import json
    import logging

    from pythonjsonlogger.orjson import OrjsonFormatter

    from project.logs import TextFormatter

    record = logging.LogRecord("notifications.events", logging.INFO, __file__, 1, "message.retry",
                               None, None)
    record.__dict__.update(message_id=7, lane="bulk", error_code="503", note="two words")
    line = json.loads(OrjsonFormatter(["levelname", "name", "message"]).format(record))
    assert (line["message"], line["message_id"], line["lane"], line["error_code"]) == (
        "message.retry", 7, "bulk", "503")
    text = TextFormatter("%(levelname)s %(message)s").format(record)
    assert text == "INFO message.retry message_id=7 lane=bulk error_code=503 note='two words'"


def test_a_bad_log_format_refuses_to_start(tmp_path: Any) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", "import project.settings"],
                          env={**__import__("os").environ, "LOG_FORMAT": "yaml"},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "LOG_FORMAT must be text or json, got 'yaml'" in done.stderr


def test_suppressions_are_counted_by_lane_and_reason_and_logged(
    client: Client, caplog: Any, django_capture_on_commit_callbacks: Any,
) -> None:
    from notifications.services import notify_many
    from notifications.suppression import suppress

    suppress(email="gone@example.com", reason="hard_bounce", source="test")
    with caplog.at_level("INFO", logger="notifications.events"), \
            django_capture_on_commit_callbacks(execute=True):
        made = notify_many([
            {"event": "order.placed", "to": "gone@example.com", "data": ORDER},
            {"event": "marketing.newsletter", "to": "gone@example.com",
             "data": {"headline": "Hi", "body": "News"}},
            {"event": "order.placed", "to": "fine@example.com", "data": ORDER},
        ])

    messages = [Message.objects.get(pk=q.message.pk) for q in made]
    assert [m.status for m in messages] == [Status.SUPPRESSED, Status.SUPPRESSED, Status.PENDING]
    samples = scrape(client)
    for lane in ("transactional", "bulk"):
        assert value(samples, "notify_suppressed_total", lane=lane, provider="",
                     reason="hard_bounce") == 1
    logged = [r for r in caplog.records if r.msg == "message.suppressed"]
    assert sorted(r.message_id for r in logged) == sorted(m.pk for m in messages[:2])
    assert {r.reason for r in logged} == {"hard_bounce"}


def test_operator_tracking_and_release_changes_are_logged_once_committed(
    caplog: Any, django_capture_on_commit_callbacks: Any,
) -> None:
    from anymail.signals import AnymailTrackingEvent
    from django.contrib.auth.models import User

    from dlq.services import dead_letters_discard, dead_letters_requeue
    from notifications.delivery import release_untried
    from notifications.services import messages_cancel
    from notifications.tracking import record_event
    from tests.deliverability.payloads.server import sent, unique

    delivered = sent(provider_id=unique("pm-"))  # claims whatever is due: first
    released = order("rel@example.com")
    [claimed] = claim_batch("transactional", 10)
    assert claimed.pk == released.pk
    cancel, requeue, discard = order("c@example.com"), order("r@example.com"), \
        order("d@example.com")
    Message.objects.filter(pk__in=[requeue.pk, discard.pk]).update(
        status=Status.DEAD, dead_reason="max_attempts")
    operator = User.objects.create(username="op")

    with caplog.at_level("INFO", logger="notifications.events"), \
            django_capture_on_commit_callbacks(execute=True):
        messages_cancel(pks=[cancel.pk, delivered.pk], user=operator, reason="test")
        dead_letters_requeue(pks=[requeue.pk])
        dead_letters_discard(pks=[discard.pk])
        record_event("Postmark", AnymailTrackingEvent(
            event_type="delivered", event_id=unique("ev-"), timestamp=timezone.now(),
            message_id=delivered.provider_message_id, recipient=delivered.to_email,
            metadata={"notification_id": str(delivered.pk)}, esp_event={}))
        release_untried([claimed], claimed.lease_token, reason="deadline")

    logged = {(r.msg, r.message_id) for r in caplog.records if r.msg.startswith("message.")}
    assert logged == {("message.cancelled", cancel.pk), ("message.requeued", requeue.pk),
                      ("message.discarded", discard.pk), ("message.delivered", delivered.pk),
                      ("message.released", released.pk)}
    lanes = {r.lane for r in caplog.records if r.msg.startswith("message.")}
    assert lanes == {"transactional"}


def test_inside_a_callers_transaction_suppressions_are_counted_once_it_commits(
    client: Client, django_capture_on_commit_callbacks: Any,
) -> None:
    """notify() inside an app's own atomic block must not hold the hot counter rows until the
    app commits (two such callers suppressing in opposite orders would deadlock)."""
    from notifications.suppression import suppress

    suppress(email="gone@example.com", reason="hard_bounce", source="test")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        message = order("gone@example.com")
        assert Message.objects.get(pk=message.pk).status == Status.SUPPRESSED
        assert not MetricTotal.objects.filter(name="suppressed").exists()

    for callback in callbacks:
        callback()
    assert value(scrape(client), "notify_suppressed_total", lane="transactional", provider="",
                 reason="hard_bounce") == 1


def test_a_send_whose_lease_was_lost_is_not_counted_as_sent_by_the_late_worker(
    client: Client, outbox: list[Any],
) -> None:
    from notifications.delivery import Attempted, record_outcomes
    from notifications.errors import SendResult
    from notifications.models import Outcome

    order("a@example.com")
    [claimed] = claim_batch("transactional", 10)
    Message.objects.filter(pk=claimed.pk).update(lease_until=timezone.now() - timedelta(1))
    sweep_lane("transactional")  # took it back: retry, counted

    record_outcomes([Attempted(claimed, SendResult(Outcome.SENT, provider_message_id="x"),
                               timezone.now(), 5, "default")], claimed.lease_token)

    samples = scrape(client)
    assert value(samples, "notify_sent_total", lane="transactional", provider="default") == 0
    assert value(samples, "notify_retried_total", lane="transactional", provider="") == 1
