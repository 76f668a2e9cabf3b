"""The sender's window: slow start, and a warm start for a drain that follows another soon."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.core.mail import EmailMessage, get_connection

from notifications import senders
from notifications.senders import Sender


def locmem() -> Any:
    return get_connection("django.core.mail.backends.locmem.EmailBackend")


def sender(name: str = "p", concurrency: int = 16) -> Sender:
    return Sender(concurrency=concurrency, message_id=str, name=name, connect=locmem)


def test_a_drain_that_follows_another_soon_starts_at_its_window() -> None:
    first = sender()
    assert first.window == 1
    first.window = 12
    first.close()

    assert sender().window == 12
    assert sender("another provider").window == 1


def test_after_a_pause_the_window_starts_at_one_again(monkeypatch: pytest.MonkeyPatch) -> None:
    first = sender()
    first.window = 12
    first.close()
    later = senders.time.monotonic() + senders.WARM_SECONDS + 1
    monkeypatch.setattr(senders.time, "monotonic", lambda: later)

    assert sender().window == 1


def test_the_warm_window_never_exceeds_the_concurrency() -> None:
    first = sender()
    first.window = 16
    first.close()

    assert sender(concurrency=4).window == 4


class SlowBackend:
    """Sends take as long as the email's subject says (seconds); records when each started."""

    started: dict[str, float] = {}

    def open(self) -> None: ...

    def close(self) -> None: ...

    def send_messages(self, emails: list[Any]) -> int:
        for email in emails:
            SlowBackend.started[email.subject] = time.monotonic()
            time.sleep(float(email.subject.split(":")[1]))
        return len(emails)


def test_mail_due_while_a_slow_send_is_in_flight_goes_out_without_waiting_for_it() -> None:
    """A drain whose refill came back empty asks again every REFILL_POLL while it has sends in
    flight: a message that arrives meanwhile does not wait for the slowest of them."""
    SlowBackend.started.clear()

    class Row:
        pk = 1

    arrives = time.monotonic() + 0.2
    batches = [[(Row(), "late:0")]]

    def more() -> list[tuple[Any, Any]]:
        return batches.pop() if time.monotonic() >= arrives and batches else []

    def build(message: Any, content: str) -> EmailMessage:
        return EmailMessage(subject=content, to=["a@example.com"])

    items: list[tuple[Any, Any]] = [(Row(), "slow:1.5")]
    with Sender(concurrency=4, message_id=str, name="slow", connect=SlowBackend) as s:
        s.window = 4  # as after a few successes: there is room for the late one
        t0 = time.monotonic()
        list(s.stream(items, build, lambda: True, more))

    assert SlowBackend.started["late:0"] - arrives < 0.1
    assert time.monotonic() - t0 >= 1.5  # the slow one was still in flight meanwhile


def test_a_rate_slot_counts_from_when_the_store_answered_not_from_before_it_was_asked() -> None:
    """The shared rate's store answers "your slot is N seconds from now" once it holds the
    rate's row; time spent waiting for that row (other workers reserving) must not move the
    send earlier, or sends of several workers bunch above the rate."""
    SlowBackend.started.clear()

    class ContendedRate:
        interval = 0.01

        def reserve(self, n: int = 1) -> float:
            time.sleep(0.2)  # waited for the rate's row behind other workers
            self.answered = time.monotonic()
            return 0.1  # the slot: 0.1 s after this answer

    class Row:
        pk = 1

    rate = ContendedRate()
    with Sender(concurrency=4, message_id=str, name="rated", connect=SlowBackend,
                limiter=rate) as s:  # type: ignore[arg-type]
        list(s.stream([(Row(), "one:0")], lambda m, c: EmailMessage(subject=c, to=["a@x.org"]),
                      lambda: True))

    assert SlowBackend.started["one:0"] >= rate.answered + 0.1
