from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from notifications.content import message_render, message_subject
from notifications.exceptions import (
    InvalidEventData,
    InvalidLocale,
    InvalidRecipient,
    InvalidSendAt,
    UnknownEvent,
)
from notifications.models import LaneState, Message, Status
from notifications.services import EventRequest, Queued, message_cancel, notify, notify_many
from templates_app.services import template_version_create

ORDER = {"order_id": 42, "total": "$19.90", "items": [{"name": "Tea", "qty": 2}]}

pytestmark = pytest.mark.usefixtures("demo", "no_wakeups")


def test_it_queues_a_message_on_the_event_types_lane_that_renders_at_send_time() -> None:
    to = {"email": "Ann@Example.com", "name": "Ann"}
    message = notify(event="order.placed", to=to, data=ORDER)

    message.refresh_from_db()
    assert message.status == Status.PENDING
    assert message.lane == "transactional"
    assert message.priority == 2
    assert message.to_email == "Ann@example.com"  # domain normalised, local part kept
    email = message_render(message)
    assert email.subject == "Order 42 confirmed"
    assert "2 × Tea" in email.html
    assert "2 × Tea" in email.text
    assert message.expires_at == message.next_attempt_at + timedelta(days=1)


def test_it_pins_the_template_version_so_an_edit_does_not_change_a_queued_email() -> None:
    message = notify(event="order.placed", to="ann@example.com", data=ORDER)
    template = message.event_type.template
    template_version_create(
        template=template, locale="en", subject="NEW {{ order_id }}", html_body="<p>new</p>"
    )

    later = notify(event="order.placed", to="bob@example.com", data=ORDER)

    message.refresh_from_db()
    assert message_subject(message) == "Order 42 confirmed"
    assert message_render(message).html.count("Order") == 1
    assert message_subject(later) == "NEW 42"
    assert later.template_version_id != message.template_version_id


def test_it_returns_the_existing_message_for_a_replayed_idempotency_key() -> None:
    first = notify(event="order.placed", to="ann@example.com", data=ORDER, idempotency_key="k1")
    again = notify(event="order.placed", to="ann@example.com", data=ORDER, idempotency_key="k1")
    other_producer = notify(
        event="order.placed", to="ann@example.com", data=ORDER, idempotency_key="k1",
        producer="order-service",
    )

    assert again.pk == first.pk
    assert other_producer.pk != first.pk
    assert Message.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_it_is_an_outbox_a_rolled_back_caller_leaves_no_message_and_no_wakeup(
    no_wakeups: list[str],
) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        notify(event="order.placed", to="ann@example.com", data=ORDER)
        raise RuntimeError("the order failed")

    assert Message.objects.count() == 0
    assert no_wakeups == []

    with transaction.atomic():
        notify(event="order.placed", to="ann@example.com", data=ORDER)
        assert no_wakeups == []  # not before commit
    assert no_wakeups == ["transactional"]


@pytest.mark.django_db(transaction=True)
def test_it_debounces_wakeups_until_a_drain_takes_the_flag(no_wakeups: list[str]) -> None:
    from notifications.wakeups import wake_taken

    for n in range(3):
        notify(event="order.placed", to=f"u{n}@example.com", data=ORDER)
    assert no_wakeups == ["transactional"]
    assert LaneState.objects.get(lane="transactional").wake_pending

    wake_taken("transactional")
    notify(event="order.placed", to="u9@example.com", data=ORDER)
    assert no_wakeups == ["transactional", "transactional"]


@pytest.mark.parametrize(
    ("kwargs", "error", "field", "text"),
    [
        ({"event": "nope.nothing"}, UnknownEvent, "event", "unknown event 'nope.nothing'"),
        ({"to": "not-an-address"}, InvalidRecipient, "to", "not a valid email address"),
        ({"to": {"email": "a@example.com", "name": "x\ny"}}, InvalidRecipient, "to", "one line"),
        ({"data": {"order_id": 1, "total": "1", "items": [{"name": "Tea", "qty": 0}]}},
         InvalidEventData, "data", "$.items[0].qty: 0 is less than the minimum of 1"),
        ({"data": {"total": "1", "items": []}}, InvalidEventData, "data",
         "'order_id' is a required property"),
        ({"locale": "english!"}, InvalidLocale, "locale", "not a language code"),
        ({"send_at": timezone.now().replace(tzinfo=None)}, InvalidSendAt, "send_at", "time zone"),
    ],
)
def test_it_refuses_bad_input_with_the_field_and_reason(
    kwargs: dict[str, Any], error: type[Exception], field: str, text: str
) -> None:
    call = {"event": "order.placed", "to": "ann@example.com", "data": ORDER, **kwargs}

    with pytest.raises(error) as caught:
        notify(**call)

    assert caught.value.field == field
    assert text in str(caught.value)
    assert Message.objects.count() == 0


def test_it_queues_a_batch_with_per_item_errors_in_order(
    django_assert_max_num_queries: Any,
) -> None:
    items = [
        EventRequest(event="order.placed", to=f"u{n}@example.com", data=ORDER,
                     idempotency_key=f"b{n}")
        for n in range(50)
    ]
    items.insert(3, EventRequest(event="order.placed", to="bad", data=ORDER))
    items.append(EventRequest(event="order.placed", to="u0@example.com", data=ORDER,
                              idempotency_key="b0"))

    with django_assert_max_num_queries(12):
        results = notify_many(items)

    assert isinstance(results[3], InvalidRecipient)
    queued = [r for r in results if isinstance(r, Queued)]
    assert len(queued) == 51
    assert [q.created for q in queued].count(True) == 50
    assert results[-1] == Queued(results[0].message, created=False)  # same key in the batch
    assert Message.objects.count() == 50
    replay = notify_many(items[:2])[1]  # a stored key
    assert (replay.message.pk, replay.created) == (results[1].message.pk, False)


def test_it_schedules_a_message_for_later() -> None:
    later = timezone.now() + timedelta(hours=2)

    message = notify(event="password.reset", to="ann@example.com",
                     data={"reset_url": "https://example.com/r/1"}, send_at=later)

    assert message.next_attempt_at == later
    assert message.expires_at == later + timedelta(hours=1)
    assert message.priority == 0


def test_it_cancels_only_messages_not_sent_yet() -> None:
    message = notify(event="order.placed", to="ann@example.com", data=ORDER)
    assert message_cancel(message=message) is True
    assert message_cancel(message=message) is False
    message.refresh_from_db()
    assert message.status == Status.CANCELLED


@pytest.mark.django_db(transaction=True)
def test_it_sends_user_registered_when_a_user_is_created_in_the_same_transaction() -> None:
    User = get_user_model()
    User.objects.create_user(username="ann", email="ann@example.com", first_name="Ann")
    with pytest.raises(RuntimeError), transaction.atomic():
        User.objects.create_user(username="bob", email="bob@example.com")
        raise RuntimeError("signup failed later on")

    messages = list(Message.objects.all())
    assert [(m.event_type.key, m.to_email, message_subject(m)) for m in messages] == [
        ("user.registered", "ann@example.com", "Welcome, Ann!")
    ]


def test_configuration_changes_apply_at_once_despite_the_lookup_cache() -> None:
    from notifications.models import EventType

    notify(event="order.placed", to="ann@example.com", data=ORDER)  # warms the cache
    event_type = EventType.objects.get(key="order.placed")
    event_type.is_active = False
    event_type.save()

    with pytest.raises(UnknownEvent):
        notify(event="order.placed", to="ann@example.com", data=ORDER)

    event_type.is_active = True
    event_type.lane = "bulk"
    event_type.save()
    assert notify(event="order.placed", to="bob@example.com", data=ORDER).lane == "bulk"


@pytest.mark.parametrize("batch", [False, True])
def test_a_key_stored_by_a_concurrent_request_resolves_to_the_stored_message(
    monkeypatch: pytest.MonkeyPatch, batch: bool,
) -> None:
    """The key check and the insert are not atomic: when another request stores the same key in
    between, the unique constraint stops the insert (COPY/INSERT on PostgreSQL, the ORM on SQLite)
    and the caller gets the stored message instead of an error or a duplicate."""
    from notifications import services

    winner = notify(event="order.placed", to="ann@example.com", data=ORDER, idempotency_key="k")
    real_existing = services._existing
    calls = []

    def not_yet_visible(producer: Any, keys: list[str]) -> Any:
        calls.append(keys)
        return {} if len(calls) == 1 else real_existing(producer, keys)

    monkeypatch.setattr(services, "_existing", not_yet_visible)
    if batch:
        other = EventRequest(event="order.placed", to="bob@example.com", data=ORDER,
                             idempotency_key="other")
        same = EventRequest(event="order.placed", to="ann@example.com", data=ORDER,
                            idempotency_key="k")
        results = notify_many([other, same])
        assert (results[1].message.pk, results[1].created) == (winner.pk, False)
        assert results[0].created and results[0].message.pk != winner.pk
    else:
        again = notify(event="order.placed", to="ann@example.com", data=ORDER,
                       idempotency_key="k")
        assert again.pk == winner.pk
    assert len(calls) >= 2  # the insert really failed and was resolved
    assert Message.objects.filter(idempotency_key="k").count() == 1


def test_new_message_builds_the_same_object_as_the_model_constructor() -> None:
    from notifications.inserts import new_message

    values = {"event_type_id": 1, "producer_id": 2, "to_email": "a@example.com", "locale": "en",
              "template_version_id": 3, "lane": "bulk", "priority": 9,
              "next_attempt_at": timezone.now()}
    fast, slow = new_message(**values), Message(**values)

    fields = [f.attname for f in Message._meta.concrete_fields]
    assert [getattr(fast, f) for f in fields] == [getattr(slow, f) for f in fields]
    assert fast.data == {} and fast.data is not new_message(**values).data
    assert fast._state.adding and fast.pk is None
    # new_message() skips Model.__init__, so it must not skip anyone's init signal.
    from django.db.models.signals import post_init, pre_init
    assert not pre_init.has_listeners(Message) and not post_init.has_listeners(Message)


def test_a_batch_stores_awkward_data_and_names_exactly() -> None:
    """COPY (PostgreSQL) escapes tabs, newlines, backslashes and quotes: check round trips."""
    data = {"headline": "Tab\there\nnew line \\ back \\N \"quoted\" ü 🎉", "body": "\r\n\x01",
            "nested": {"list": [1, 2.5, None, True, "\\t"]}}
    items = [EventRequest(event="marketing.newsletter", to={"email": f"r{n}@example.com",
                                                            "name": f"Ré\\ader\t{n}"},
                          data={**data, "headline": data["headline"] + str(n)}, locale="pt-BR")
             for n in range(3)]

    results = [r.message for r in notify_many(items)]

    assert all(r.pk for r in results)
    stored = {m.pk: m for m in Message.objects.filter(pk__in=[r.pk for r in results])}
    for n, result in enumerate(results):
        row = stored[result.pk]
        assert row.data == {**data, "headline": data["headline"] + str(n)}
        assert (row.to_name, row.locale, row.status, row.attempts) == (
            f"Ré\\ader\t{n}", "pt-BR", Status.PENDING, 0)
        assert row.created_at == result.created_at and row.idempotency_key is None


# --- one home for each rule: regressions ------------------------------------------------------

def test_rolling_a_template_back_pins_new_messages_to_the_version_active_again() -> None:
    """template_version_activate() writes with .update() (no post_save): the lookup cache must
    still forget the version it held, or new messages keep the one just rolled back from."""
    from notifications.models import EventType
    from templates_app.services import template_version_activate

    template = EventType.objects.get(key="order.placed").template
    v1 = template.versions.get(is_active=True)
    v2 = template_version_create(template=template, locale="en", subject="v2 {{ order_id }}",
                                 html_body="<p>v2</p>")
    assert notify(event="order.placed", to="a@example.com", data=ORDER).template_version_id \
        == v2.pk  # the process now caches v2 as the active version

    template_version_activate(version=v1)
    message = notify(event="order.placed", to="b@example.com", data=ORDER)

    assert message.template_version_id == v1.pk
    assert message_subject(message) == "Order 42 confirmed"


@pytest.mark.django_db(transaction=True)
def test_a_rollback_committed_by_another_connection_is_seen_within_the_cache_ttl(
    settings: Any,
) -> None:
    """Other processes learn of an activation by the TTL; set it to 0 and check they do."""
    from notifications.models import EventType
    from templates_app.services import template_version_activate

    settings.NOTIFY = {**settings.NOTIFY, "LOOKUP_CACHE_SECONDS": 0}
    template = EventType.objects.get(key="order.placed").template
    v1 = template.versions.get(is_active=True)
    template_version_create(template=template, locale="en", subject="v2", html_body="<p>2</p>")
    with transaction.atomic():
        template_version_activate(version=v1)
    assert notify(event="order.placed", to="a@example.com", data=ORDER).template_version_id \
        == v1.pk


def test_the_same_key_with_another_body_raises_in_process_too() -> None:
    from notifications.exceptions import IdempotencyConflict

    first = notify(event="order.placed", to="ann@example.com", data=ORDER, idempotency_key="k")

    with pytest.raises(IdempotencyConflict) as caught:
        notify(event="order.placed", to="bob@example.com", data=ORDER, idempotency_key="k")

    assert caught.value.existing.pk == first.pk
    assert (caught.value.field, caught.value.code) == ("idempotency_key", "idempotency_conflict")
    # The same request again, with the recipient in its other form, is a replay.
    again = notify(event="order.placed", to={"email": "ann@example.com"}, data=ORDER,
                   idempotency_key="k")
    assert again.pk == first.pk
    assert Message.objects.count() == 1


def test_a_batch_reports_created_replayed_and_conflict_per_item() -> None:
    from notifications.exceptions import IdempotencyConflict

    notify(event="order.placed", to="ann@example.com", data=ORDER, idempotency_key="old")
    items = [
        EventRequest(event="order.placed", to="new@example.com", data=ORDER, idempotency_key="n"),
        EventRequest(event="order.placed", to="ann@example.com", data=ORDER,
                     idempotency_key="old"),
        EventRequest(event="order.placed", to="eve@example.com", data=ORDER,
                     idempotency_key="old"),
        EventRequest(event="order.placed", to="other@example.com", data=ORDER,
                     idempotency_key="n"),
    ]

    created, replayed, stored_conflict, batch_conflict = notify_many(items)

    assert isinstance(created, Queued) and created.created
    assert isinstance(replayed, Queued) and not replayed.created
    assert isinstance(stored_conflict, IdempotencyConflict)
    assert stored_conflict.existing.pk == replayed.message.pk
    assert isinstance(batch_conflict, IdempotencyConflict)
    assert batch_conflict.existing.pk == created.message.pk
    assert Message.objects.count() == 2


@pytest.mark.parametrize(
    ("send_at", "text"),
    [
        (timedelta(minutes=-5), "in the past"),
        (timedelta(days=31), "within 30 days"),
    ],
)
def test_notify_refuses_a_send_at_outside_the_window(send_at: timedelta, text: str) -> None:
    with pytest.raises(InvalidSendAt) as caught:
        notify(event="order.placed", to="ann@example.com", data=ORDER,
               send_at=timezone.now() + send_at)

    assert caught.value.field == "send_at" and text in caught.value.message
    assert Message.objects.count() == 0
    # A few seconds of clock skew between producer and platform is not "the past".
    assert notify(event="order.placed", to="ann@example.com", data=ORDER,
                  send_at=timezone.now() - timedelta(seconds=5)).pk


@pytest.mark.parametrize(
    ("kwargs", "field", "text"),
    [
        ({"idempotency_key": "k" * 201}, "idempotency_key", "at most 200 characters"),
        ({"idempotency_key": "   "}, "idempotency_key", "non-blank"),
        ({"event": "e" * 101}, "event", "at most 100 characters"),
        ({"to": "a" * 250 + "@example.com"}, "to", "at most 254 characters"),
        ({"locale": "en-" + "x" * 20}, "locale", "not a language code"),
    ],
)
def test_notify_refuses_values_longer_than_their_columns(
    kwargs: dict[str, Any], field: str, text: str,
) -> None:
    """Lengths are producer rules too: without them SQLite stores the value and PostgreSQL
    fails with a database error."""
    from notifications.exceptions import NotifyError

    with pytest.raises(NotifyError) as caught:
        notify(**{"event": "order.placed", "to": "ann@example.com", "data": ORDER, **kwargs})

    assert caught.value.field == field and text in caught.value.message
    assert Message.objects.count() == 0
