"""The sender's window: slow start, and a warm start for a drain that follows another soon."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.mail import get_connection

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
