"""An idle drain stays NOTIFY_DRAIN_IDLE_SECONDS for mail that arrives meanwhile, and sends it
over its open connections instead of leaving it to a new drain."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import connection

from notifications.delivery import drain_lane
from notifications.services import notify

ORDER = {"order_id": 7, "total": "$5", "items": [{"name": "Tea", "qty": 1}]}

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("demo")]


def order_later(delay: float, to: str) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        try:
            notify(event="order.placed", to=to, data=ORDER)  # committed: the drain can see it
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.parametrize(("idle", "sent"), [(1.0, 2), (0.0, 1)])
def test_mail_that_arrives_while_a_drain_lingers_goes_out_with_it(
    settings: Any, outbox: list[Any], no_wakeups: list[str], idle: float, sent: int,
) -> None:
    settings.NOTIFY = {**settings.NOTIFY, "DRAIN_IDLE_SECONDS": idle}
    notify(event="order.placed", to="first@example.com", data=ORDER)
    late = order_later(0.4, "late@example.com")

    started = time.monotonic()
    report = drain_lane("transactional", budget=5)
    took = time.monotonic() - started
    late.join()

    assert report.sent == sent
    if idle:
        assert [m.to for m in outbox] == [["first@example.com"], ["late@example.com"]]
        assert 1.3 <= took < 2.5  # ended IDLE seconds after the late one, not at the budget
    else:
        assert took < 0.4
