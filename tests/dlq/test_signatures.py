from __future__ import annotations

from typing import Any

import pytest

from dlq.backfill import backfill_signatures
from dlq.signatures import enhanced_status_code, failure_signature, normalise_error
from notifications.delivery import drain_lane
from notifications.models import DeliveryAttempt, Message, Status
from notifications.services import notify
from tests.dlq.helpers import ORDER, dead_message


def sig(**overrides: str) -> str:
    base = {"dead_reason": "permanent_error", "error_class": "smtplib.SMTPRecipientsRefused",
            "error_code": "550",
            "error_message": "{'bob@example.com': (550, b'5.1.1 <bob@example.com>: user unknown "
                             "(id 8f3a9c01d2)')}",
            "to_email": "bob@example.com"}
    return failure_signature(**{**base, **overrides})


def test_it_ignores_addresses_ids_and_numbers_in_the_message() -> None:
    other = ("{'ann@example.com': (550, b'5.1.1 <ann@example.com>: user unknown "
             "(id 77aa00bb9912)')}")
    assert sig() == sig(error_message=other, to_email="ann@example.com")
    assert len(sig()) == 16


@pytest.mark.parametrize("change", [
    {"dead_reason": "max_attempts"},
    {"error_class": "smtplib.SMTPDataError"},
    {"error_code": "551"},
    {"to_email": "bob@other.org"},
    {"error_message": "{'bob@example.com': (550, b'5.7.1 <bob@example.com>: user unknown "
                      "(id 8f3a9c01d2)')}"},
    {"error_message": "mailbox full"},
])
def test_each_part_makes_a_different_group(change: dict[str, str]) -> None:
    assert sig(**change) != sig()


def test_normalising_keeps_the_words_and_the_enhanced_code_separately() -> None:
    text = "(550, b'5.1.1 <x@y.com>: Recipient \"abc123\" rejected, uuid " \
           "123e4567-e89b-12d3-a456-426614174000')"
    assert normalise_error(text) == (
        "(<n>, <esc> <<email>>: Recipient <value> rejected, uuid <uuid>)")
    assert enhanced_status_code(text) == "5.1.1"


def test_the_drain_stores_the_signature_the_backfill_computes(
    outbox: list[Any], no_wakeups: list[str], demo: None, settings: Any,
) -> None:
    message = notify(event="order.placed", to="ann@example.com", data=ORDER)
    from templates_app.models import TemplateVersion
    TemplateVersion.objects.filter(pk=message.template_version_id).update(
        html_body="{% load secrets %}")  # a render failure: permanent, dies at once
    drain_lane("transactional", budget=2)
    message.refresh_from_db()
    assert message.status == Status.DEAD and message.failure_signature

    stored = message.failure_signature
    Message.objects.filter(pk=message.pk).update(failure_signature="")
    assert backfill_signatures(Message, DeliveryAttempt) == 1
    message.refresh_from_db()
    assert message.failure_signature == stored


def test_the_backfill_fills_only_dead_rows_without_one(demo: None, no_wakeups: list[str]) -> None:
    dead = dead_message()
    unsigned = dead_message("bob@example.com")
    Message.objects.filter(pk=unsigned.pk).update(failure_signature="")
    alive = notify(event="order.placed", to="cy@example.com", data=ORDER)

    assert backfill_signatures(Message, DeliveryAttempt) == 1

    unsigned.refresh_from_db()
    assert unsigned.failure_signature == dead.failure_signature  # same failure, same domain
    assert Message.objects.get(pk=alive.pk).failure_signature == ""


def test_a_message_killed_by_the_sweeper_gets_a_signature(demo: None,
                                                          no_wakeups: list[str]) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from notifications.delivery import claim_batch
    from notifications.sweeper import sweep_lane

    message = notify(event="order.placed", to="ann@example.com", data=ORDER)
    Message.objects.filter(pk=message.pk).update(max_attempts=1)
    claim_batch("transactional", 10)
    Message.objects.filter(pk=message.pk).update(lease_until=timezone.now() - timedelta(1))

    sweep_lane("transactional")

    message.refresh_from_db()
    assert message.status == Status.DEAD and message.failure_signature
    stored = message.failure_signature
    Message.objects.filter(pk=message.pk).update(failure_signature="")
    backfill_signatures(Message, DeliveryAttempt)
    assert Message.objects.get(pk=message.pk).failure_signature == stored
