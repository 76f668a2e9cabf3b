"""End to end: notify() -> real qcluster processes -> Anymail Postmark backend -> fake server."""

from __future__ import annotations

import pytest

from notifications.delivery import message_id_for
from notifications.services import notify, notify_many
from tests.e2e.conftest import outcome_of, wait_final
from tests.fakes.postmark import FakePostmark

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True),
              pytest.mark.usefixtures("demo")]

ORDER = {"order_id": 1, "total": "$1", "items": [{"name": "Tea", "qty": 1}]}


@pytest.fixture
def postmark(postmark_module: FakePostmark) -> FakePostmark:
    postmark_module.reset()
    return postmark_module


def test_each_outcome_reaches_its_final_status_and_each_email_arrives_once(
    postmark: FakePostmark,
) -> None:
    script = {
        "ok@example.com": [],
        "flaky@example.com": ["503", "500"],
        "throttled@example.com": ["429:1"],
        "invalid@example.com": ["422"],
        "down@example.com": ["503"] * 20,
        "slow@example.com": ["hang:2"],
        "reset@example.com": ["reset"],
    }
    for address, modes in script.items():
        postmark.script(address, modes)
    messages = {a: notify(event="user.registered", to=a, data={"username": a}) for a in script}
    newsletter = notify(event="marketing.newsletter", to="reader@example.com",
                        data={"headline": "News", "body": "Hello"})

    final = wait_final([m.pk for m in [*messages.values(), newsletter]], timeout=90)

    outcome = outcome_of(final, messages)

    assert outcome("ok@example.com") == ("sent", 1, "")
    assert outcome("flaky@example.com") == ("sent", 3, "")
    assert outcome("throttled@example.com") == ("sent", 2, "")
    assert outcome("invalid@example.com") == ("dead", 1, "permanent_error")
    assert outcome("down@example.com") == ("dead", 6, "max_attempts")  # user.registered: 6
    assert outcome("slow@example.com") == ("sent", 2, "")
    assert outcome("reset@example.com") == ("sent", 2, "")
    assert final[newsletter.pk].status == "sent"

    # Throttled: the second try came no sooner than Retry-After said.
    tries = postmark.requests_for("throttled@example.com")
    assert tries[1].time - tries[0].time >= 1.0

    # Exactly once: every sent message accepted once; dead ones never.
    accepted = postmark.count_accepted_by_message_id()
    for m in final.values():
        expected = 1 if m.status == "sent" else 0
        assert accepted[message_id_for(m.pk)] == expected, m.to_email
    attempts = final[messages["slow@example.com"].pk].delivery_attempts.values_list(
        "outcome", flat=True)
    assert list(attempts) == ["unknown", "sent"]


def test_a_password_reset_is_not_stuck_behind_a_marketing_blast(postmark: FakePostmark) -> None:
    blast = notify_many([
        {"event": "marketing.newsletter", "to": f"r{n}@example.com",
         "data": {"headline": "Sale", "body": "..."}}
        for n in range(3000)
    ])
    reset = notify(event="password.reset", to="ann@example.com",
                   data={"reset_url": "https://example.com/r/1"})

    reset_sent_at = wait_final([reset.pk], timeout=30)[reset.pk].sent_at
    final = wait_final([q.message.pk for q in blast], timeout=120)

    # Newsletters queued before the reset were still going out after it: the reset did not
    # wait for the blast to drain, because it has its own lane and cluster.
    later = [m for m in final.values() if m.sent_at > reset_sent_at]
    assert len(later) > 100
    assert {m.status for m in final.values()} == {"sent"}
    assert sum(postmark.count_accepted_by_message_id().values()) == 3001
