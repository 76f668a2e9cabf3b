"""Waiting drains wake on PostgreSQL NOTIFY (notifications/listener.py), and fall back to polling
while the listening connection is down."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone

from notifications import delivery, listener
from notifications.delivery import drain_lane
from notifications.models import DeliveryAttempt, Message, Status
from notifications.services import notify
from notifications.wakeups import _flip, wake_lane

ORDER = {"order_id": 7, "total": "$5", "items": [{"name": "Tea", "qty": 1}]}

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif("connection.vendor != 'postgresql'", reason="LISTEN/NOTIFY: PostgreSQL"),
]


def eventually(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def watch(no_wakeups: list[str]) -> Iterator[listener.Watch]:
    listener.stop()  # a fresh listener: earlier tests' drains asked it for other lanes
    watch = listener.watch("transactional")
    assert watch is not None

    def listening() -> bool:
        watch.look()
        return watch.listening()

    assert eventually(listening), "the listener never connected"
    yield watch


def test_a_wake_up_wakes_a_waiting_drain_at_once(watch: listener.Watch) -> None:
    watch.look()
    assert not watch.changed()  # nothing heard, and the last look is fresh
    # Only the lanes drained in this process are listened to: bulk's wake-ups wake nobody here.
    assert listener.listener().listening == {"transactional"}

    timer = threading.Timer(0.2, lambda: (wake_lane("bulk"), wake_lane("transactional"),
                                          connection.close()))
    started = time.monotonic()
    timer.start()
    watch.wait(5.0)
    woke = time.monotonic() - started
    timer.join()

    assert 0.15 < woke < 1.0  # woken by the transactional lane's notification, not the timeout
    assert watch.changed()
    watch.look()
    assert not watch.changed()


def test_a_lost_listening_connection_means_polling_until_it_is_back(
    watch: listener.Watch,
) -> None:
    watch.look()

    def kill() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE application_name = %s", [listener.APPLICATION_NAME])
            assert cursor.fetchone() is not None
        connection.close()

    timer = threading.Timer(0.2, kill)
    started = time.monotonic()
    timer.start()
    watch.wait(5.0)  # a drain asleep on the listener when it goes down wakes to poll
    timer.join()
    assert time.monotonic() - started < 1.5

    # Down: every question says "look at the table", and waits are plain sleeps.
    assert eventually(lambda: not listener.listener().up, timeout=5)
    assert watch.changed()
    # Back (with a new epoch): a look made while down does not count as listening.
    assert eventually(lambda: listener.listener().up, timeout=10)
    assert watch.changed()
    watch.look()
    assert watch.listening() and not watch.changed()


def test_no_wake_up_is_heard_once_recheck_seconds_have_passed(
    watch: listener.Watch, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A retry whose backoff ran out wakes nobody: the drain looks anyway every RECHECK."""
    monkeypatch.setattr(listener, "RECHECK_SECONDS", 0.2)
    watch.look()
    assert not watch.changed()
    time.sleep(0.25)
    assert watch.changed()


def test_the_wake_up_commits_without_waiting_for_the_flush_only_on_its_own() -> None:
    """pg_notify's statement runs with synchronous_commit off in autocommit (its own
    transaction); inside a caller's transaction it must not switch it off for all of it."""
    def setting() -> str:
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            return str(cursor.fetchone()[0])

    assert setting() == "on"
    _flip("transactional")
    assert setting() == "on"  # set_config(..., true) lasted only for the statement's transaction
    with transaction.atomic():
        assert _flip("bulk") in (0, 1)
        assert setting() == "on"


@pytest.mark.usefixtures("demo")
def test_a_lingering_drain_sends_late_mail_on_its_notification_without_polling(
    settings: Any, outbox: list[Any], watch: listener.Watch, monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings.NOTIFY = {**settings.NOTIFY, "DRAIN_IDLE_SECONDS": 1.5}
    probes: list[float] = []
    due_now = delivery._due_now

    def counted(lane: str) -> bool:
        probes.append(time.monotonic())
        return due_now(lane)

    monkeypatch.setattr(delivery, "_due_now", counted)
    arrived: list[float] = []

    def late() -> None:
        time.sleep(0.5)
        try:
            arrived.append(time.monotonic())
            notify(event="order.placed", to="late@example.com", data=ORDER)  # wakes on commit
        finally:
            connection.close()

    thread = threading.Thread(target=late)
    thread.start()
    report = drain_lane("transactional", budget=5)
    thread.join()

    assert report.sent == 1 and [m.to for m in outbox] == [["late@example.com"]]
    # A poll every IDLE_POLL would have probed ~80 times over the 2 s this drain waited.
    assert len(probes) <= 8, probes
    # Sent on the notification (the index probe right after it), not at a RECHECK.
    assert any(0 <= t - arrived[0] < 0.2 for t in probes), (arrived, probes)


@pytest.mark.usefixtures("demo")
def test_a_retry_falling_due_is_sent_on_time_though_nobody_notifies_it(
    settings: Any, outbox: list[Any], watch: listener.Watch,
) -> None:
    """After lingering, a drain waits for the next retry within its budget; the retry's
    backoff running out sends no notification, so the drain must look when it falls due."""
    message = notify(event="order.placed", to="retry@example.com", data=ORDER)
    due = timezone.now() + timedelta(seconds=0.6)
    Message.objects.filter(pk=message.pk).update(status=Status.RETRY, next_attempt_at=due)

    report = drain_lane("transactional", budget=5)

    assert report.sent == 1
    attempt = DeliveryAttempt.objects.get(message=message)
    assert 0 <= (attempt.started_at - due).total_seconds() < 0.3, attempt.started_at - due
