from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from dlq.models import RePin
from dlq.selectors import DeadLetterFilter, InvalidFilter, Skip, dead_letter_groups, preview
from dlq.services import dead_letters_discard, dead_letters_requeue
from notifications import suppression, transitions
from notifications.delivery import claim_batch, message_id_for
from notifications.models import DeadReason, Message, Outcome, Status
from notifications.services import notify
from templates_app.services import template_version_create
from tests.dlq.helpers import ORDER, dead_message

pytestmark = pytest.mark.usefixtures("demo", "no_wakeups")

NEWS = {"headline": "Hi", "body": "News"}


def ids(flt: DeadLetterFilter) -> set[int]:
    return set(flt.queryset().values_list("pk", flat=True))


def test_the_filter_narrows_by_each_field() -> None:
    ann = dead_message("ann@example.com")
    bob = dead_message("bob@other.org", reason=DeadReason.PERMANENT_ERROR)
    news = dead_message("cy@example.com", event="marketing.newsletter", data=NEWS)
    notify(event="order.placed", to="alive@example.com", data=ORDER)

    assert ids(DeadLetterFilter()) == {ann.pk, bob.pk, news.pk}
    assert ids(DeadLetterFilter(reason="permanent_error")) == {bob.pk}
    assert ids(DeadLetterFilter(lane="bulk")) == {news.pk}
    assert ids(DeadLetterFilter(event_type="marketing.newsletter")) == {news.pk}
    assert ids(DeadLetterFilter(domain="other.org")) == {bob.pk}
    # The same failure at the same domain is one group, whatever the event.
    assert ids(DeadLetterFilter(signature=ann.failure_signature)) == {ann.pk, news.pk}
    assert ids(DeadLetterFilter(q="bob@")) == {bob.pk}
    assert ids(DeadLetterFilter(q=str(news.pk))) == {news.pk}
    assert ids(DeadLetterFilter(q=message_id_for(ann.pk))) == {ann.pk}
    assert ids(DeadLetterFilter(pks=(ann.pk, bob.pk))) == {ann.pk, bob.pk}
    later = timezone.now() + timedelta(minutes=1)
    assert ids(DeadLetterFilter(since=later)) == set()
    assert ids(DeadLetterFilter(until=later)) == {ann.pk, bob.pk, news.pk}


def test_a_filter_round_trips_through_its_params() -> None:
    flt = DeadLetterFilter.from_params({"reason": "expired", "lane": "bulk", "since": "2026-01-02",
                                        "until": "2026-01-03", "pks": "3,1", "q": " x "})
    assert DeadLetterFilter.from_params(flt.to_params()) == flt
    assert flt.pks == (1, 3) and flt.q == "x"
    assert flt.until is not None and flt.until.hour == 23


@pytest.mark.parametrize(("params", "error"), [
    ({"reason": "nope"}, "reason: 'nope' is not one of"),
    ({"lane": "fast"}, "lane: 'fast' is not one of"),
    ({"event_type": "no.such"}, "event_type: no event type 'no.such'"),
    ({"signature": "xyz!"}, "signature:"),
    ({"since": "yesterday"}, "since: 'yesterday' is not a date"),
    ({"since": "2026-02-01", "until": "2026-01-01"}, "since: must not be after until"),
    ({"pks": "1,a"}, "pks: must be message ids"),
    ({"pks": ["-4"]}, "pks: must be message ids"),
])
def test_a_bad_filter_says_which_field(params: dict[str, Any], error: str) -> None:
    with pytest.raises(InvalidFilter, match=error.replace("(", r"\(")):
        DeadLetterFilter.from_params(params)


def test_groups_count_each_signature_with_a_label_from_the_sample() -> None:
    a1 = dead_message("ann@example.com")
    dead_message("bob@example.com")
    other = dead_message("cy@example.com", reason=DeadReason.PERMANENT_ERROR,
                         error_class="anymail.exceptions.AnymailRecipientsRefused",
                         error_code="recipient_refused", error="refused")

    groups = dead_letter_groups()

    assert [(g.signature, g.count) for g in groups] == [
        (a1.failure_signature, 2), (other.failure_signature, 1)]
    assert "Out of attempts" in groups[0].label and "451" in groups[0].label
    assert "example.com" in groups[0].label
    assert groups[0].first_seen <= groups[0].last_seen
    assert groups[1].sample.pk == other.pk


def test_the_preview_counts_per_lane_and_each_skip_reason() -> None:
    dead_message("ann@example.com")
    dead_message("cy@example.com", event="marketing.newsletter", data=NEWS)
    # Created three days ago: order.placed expires after a day.
    dead_message("old@example.com", created_at=timezone.now() - timedelta(days=3))
    # An equal request was sent meanwhile.
    twin = dead_message("twin@example.com", data={**ORDER, "order_id": 7})
    sent = notify(event="order.placed", to="twin@example.com", data={**ORDER, "order_id": 7})
    [c] = [m for m in claim_batch("transactional", 100) if m.pk == sent.pk]
    transitions.mark_sent([sent.pk], token=c.lease_token, provider="default")
    # Maybe sent: the last try timed out after the data went out.
    dead_message("maybe@example.com", outcome=Outcome.UNKNOWN)
    # The newsletter's recipient unsubscribed from it since.
    suppression.unsubscribe(email="CY@example.com", categories=["newsletter"],
                            source="test")

    result = preview(DeadLetterFilter(), kind="requeue")

    assert result.matching == 5
    assert result.per_lane == {"transactional": 2}
    assert result.skipped == {Skip.EXPIRED: 1, Skip.ALREADY_SENT: 1, Skip.SUPPRESSED: 1}
    assert result.may_have_been_sent == 1
    assert twin.pk not in {m.pk for m in Message.objects.filter(status=Status.PENDING)}

    with_expired = preview(DeadLetterFilter(), kind="requeue", include_expired=True)
    assert with_expired.per_lane == {"transactional": 3}
    discard = preview(DeadLetterFilter(), kind="discard")
    assert discard.per_lane == {"transactional": 4, "bulk": 1} and discard.skipped == {}


def test_requeue_keeps_or_repins_the_template_version_as_chosen() -> None:
    keep = dead_message("keep@example.com")
    repin = dead_message("repin@example.com")
    old_version = keep.template_version_id
    new = template_version_create(template=keep.event_type.template, locale="en",
                                  subject="v2 {{ order_id }}", html_body="<p>v2</p>")

    dead_letters_requeue(pks=[keep.pk], repin=RePin.KEEP)
    dead_letters_requeue(pks=[repin.pk], repin=RePin.ACTIVE)

    keep.refresh_from_db()
    repin.refresh_from_db()
    assert (keep.status, keep.template_version_id, keep.attempts) == (Status.PENDING,
                                                                       old_version, 0)
    assert (repin.status, repin.template_version_id) == (Status.PENDING, new.pk)
    assert repin.expires_at is not None and repin.expires_at > timezone.now() + timedelta(hours=23)


def test_requeue_with_checks_leaves_skipped_rows_dead_and_counts_them() -> None:
    fresh = dead_message("ann@example.com")
    old = dead_message("old@example.com", created_at=timezone.now() - timedelta(days=3))

    result = dead_letters_requeue(pks=[fresh.pk, old.pk], skip_checks=True)

    assert (result.moved, dict(result.skipped), result.lanes) == (
        1, {Skip.EXPIRED: 1}, {"transactional"})
    assert Message.objects.get(pk=old.pk).status == Status.DEAD
    assert Message.objects.get(pk=fresh.pk).status == Status.PENDING


def test_discard_cancels_and_keeps_the_dead_reason() -> None:
    dead = dead_message(reason=DeadReason.PERMANENT_ERROR)
    alive = notify(event="order.placed", to="alive@example.com", data=ORDER)

    assert dead_letters_discard(pks=[dead.pk, alive.pk]).moved == 1

    dead.refresh_from_db()
    assert (dead.status, dead.dead_reason) == (Status.CANCELLED, DeadReason.PERMANENT_ERROR)
    assert dead.failure_signature
    assert Message.objects.get(pk=alive.pk).status == Status.PENDING
    assert dead_letters_discard(pks=[dead.pk]).moved == 0
