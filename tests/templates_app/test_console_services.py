"""The template console's services and selectors: blast radius, audit, diff, draft rendering,
test sends (rendered with sample data, sent by the task through the configured backend)."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from notifications.demo import DEMO, seed_demo
from notifications.models import AuditAction, AuditEntry, EventType, Lane, Message, Status
from notifications.services import notify
from templates_app import tasks
from templates_app.models import TemplateVersion
from templates_app.rendering import render_draft, render_version
from templates_app.selectors import (
    sample_data_for,
    template_version_blast_radius,
    template_version_previous,
    template_versions_diff,
)
from templates_app.services import (
    TEST_SEND_TASK,
    template_version_activate,
    template_version_create,
    template_version_test_send,
)
from tests.factories import EventTypeFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_versions(no_wakeups: list[str]) -> tuple[Any, TemplateVersion, TemplateVersion]:
    """An event type per lane sharing one template; v1 then v2 (active)."""
    transactional = EventTypeFactory(key="order.shipped", lane=Lane.TRANSACTIONAL)
    template = transactional.template
    bulk = EventTypeFactory(key="promo.weekly", template=template, lane=Lane.BULK)
    v1 = template.versions.get()
    return (transactional, bulk), v1, template_version_create(
        template=template, locale="en", subject="v2 {{ name }}", html_body="<p>v2</p>")


def _queue(event_type: EventType, n: int, status: str = Status.PENDING) -> list[Message]:
    made = [notify(event=event_type.key, to=f"u{i}@example.com", data={"name": "x"})
            for i in range(n)]
    Message.objects.filter(pk__in=[m.pk for m in made]).update(status=status)
    return made


def test_it_counts_queued_messages_pinned_to_the_replaced_version(two_versions) -> None:
    (transactional, bulk), v1, v2 = two_versions
    _queue(transactional, 3)
    _queue(transactional, 2, Status.RETRY)
    _queue(transactional, 1, Status.PROCESSING)
    _queue(bulk, 4)
    _queue(transactional, 5, Status.SENT)  # finished: not affected
    _queue(bulk, 2, Status.DEAD)  # in the DLQ: not queued
    pinned_to_v1 = _queue(transactional, 1)
    Message.objects.filter(pk=pinned_to_v1[0].pk).update(template_version=v1)

    radius = template_version_blast_radius(version=v1)

    assert radius.replaced == v2
    assert (radius.total, radius.capped, radius.total_label) == (10, False, "10")
    assert [(g.event_type, g.lane, g.count) for g in radius.groups] == [
        ("order.shipped", "transactional", 6), ("promo.weekly", "bulk", 4)]


def test_it_caps_the_count(two_versions) -> None:
    (transactional, _), v1, _ = two_versions
    _queue(transactional, 5)

    radius = template_version_blast_radius(version=v1, cap=3)

    assert (radius.total, radius.capped, radius.total_label) == (3, True, "more than 3")
    assert sum(g.count for g in radius.groups) == 3


def test_it_has_no_blast_radius_for_the_active_version_or_a_new_locale(two_versions) -> None:
    (transactional, _), _, v2 = two_versions
    _queue(transactional, 2)
    fr = template_version_create(template=v2.template, locale="fr", subject="fr",
                                 html_body="fr", activate=False)

    assert template_version_blast_radius(version=v2).is_noop
    radius = template_version_blast_radius(version=fr)
    assert radius.replaced is None and radius.total == 0 and not radius.is_noop


def test_it_rolls_back_without_touching_queued_messages_and_audits_it(
    two_versions, django_user_model
) -> None:
    (transactional, _), v1, v2 = two_versions
    queued = _queue(transactional, 2)
    operator = django_user_model.objects.create_user(username="olga")

    template_version_activate(version=v1, user=operator, reason="v2 has a typo")

    v1.refresh_from_db()
    v2.refresh_from_db()
    assert v1.is_active and not v2.is_active
    assert set(Message.objects.filter(pk__in=[m.pk for m in queued])
               .values_list("template_version_id", flat=True)) == {v2.pk}
    entry = AuditEntry.objects.filter(action=AuditAction.TEMPLATE_ACTIVATE).latest("id")
    assert (entry.user, entry.username, entry.target, entry.reason) == (
        operator, "olga", str(v1), "v2 has a typo")
    assert entry.filter["replaced"] == v2.pk
    assert entry.filter["queued_pinned_to_replaced"] == 2
    # New messages get the version now active.
    assert notify(event=transactional.key, to="new@example.com",
                  data={"name": "x"}).template_version_id == v1.pk


def test_it_does_not_audit_activating_the_active_version(two_versions) -> None:
    _, _, v2 = two_versions
    before = AuditEntry.objects.count()

    template_version_activate(version=v2)

    assert AuditEntry.objects.count() == before


def test_it_audits_a_new_version_and_its_activation(django_user_model) -> None:
    template = EventTypeFactory().template
    v1 = template.versions.get()
    editor = django_user_model.objects.create_user(username="ed")

    v2 = template_version_create(template=template, locale="en", subject="s", html_body="h",
                                 user=editor)

    edit = AuditEntry.objects.get(action=AuditAction.TEMPLATE_EDIT)
    activation = AuditEntry.objects.get(action=AuditAction.TEMPLATE_ACTIVATE)
    assert (edit.user, edit.target, edit.filter["version"]) == (editor, str(v2), v2.pk)
    assert edit.filter["replaced"] == v1.pk
    assert (activation.user, activation.filter["replaced"]) == (editor, v1.pk)
    assert v2.created_by == editor


def test_it_finds_the_previous_version_to_roll_back_to(two_versions) -> None:
    _, v1, v2 = two_versions

    assert template_version_previous(version=v2) == v1
    assert template_version_previous(version=v1) is None


def test_it_diffs_two_versions_field_by_field(two_versions) -> None:
    _, v1, _ = two_versions
    v3 = template_version_create(template=v1.template, locale="en", subject=v1.subject,
                                 html_body="<p>Hi</p>\n<p>new line</p>", text_body="plain")

    diffs = {d.field: d.lines for d in template_versions_diff(old=v1, new=v3)}

    assert diffs["subject"] == []
    assert f"-{v1.html_body}" in diffs["html_body"]
    assert "+<p>new line</p>" in diffs["html_body"]
    assert diffs["html_body"][:2] == [f"--- v{v1.pk}", f"+++ v{v3.pk}"]
    assert "+plain" in diffs["text_body"]


def test_it_renders_a_draft_or_lists_every_compile_error_with_its_line() -> None:
    ok = render_draft(subject="Hi {{ name }}", html_body="<p>{{ name }}</p>", text_body="",
                      context={"name": "Ada"})
    bad = render_draft(subject="{% if x %}", html_body="<p>a</p>\n\n{% load static %}",
                       text_body="", context={})
    failing = render_draft(subject="s", html_body="<p>a</p>\n{% for a, b in pairs %}{% endfor %}",
                           text_body="", context={"pairs": [[1, 2, 3]]})

    assert ok.errors == [] and ok.rendered is not None and ok.rendered.subject == "Hi Ada"
    assert bad.rendered is None
    assert bad.errors[0].startswith("Subject, line 1:")
    assert bad.errors[1].startswith("HTML, line 3: Invalid block tag on line 3: 'load'")
    assert failing.rendered is None
    assert "line 2" in failing.errors[0] and "Need 2 values to unpack" in failing.errors[0]


def test_it_audits_a_test_send_and_enqueues_it_on_commit(
    two_versions, monkeypatch, django_capture_on_commit_callbacks, django_user_model
) -> None:
    (transactional, _), v1, _ = two_versions
    queued: list[tuple[Any, ...]] = []
    monkeypatch.setattr("templates_app.services.async_task",
                        lambda *args, **kwargs: queued.append((args, kwargs)))
    operator = django_user_model.objects.create_user(username="olga")

    with django_capture_on_commit_callbacks(execute=True):
        template_version_test_send(version=v1, to_email="qa@example.com",
                                   event_type=transactional, user=operator)
        assert queued == []  # nothing leaves before the commit

    assert queued == [((TEST_SEND_TASK, v1.pk, "qa@example.com", transactional.pk),
                       {"cluster": "transactional", "group": "template-test-send"})]
    entry = AuditEntry.objects.get(action=AuditAction.TEMPLATE_TEST_SEND)
    assert (entry.user, entry.target, entry.filter["to"]) == (operator, str(v1), "qa@example.com")


def test_the_task_sends_the_version_with_sample_data_through_the_backend(outbox, demo) -> None:
    event_type = EventType.objects.get(key="order.placed")
    version = event_type.template.versions.get(is_active=True)

    result = tasks.send_test_email(version.pk, "qa@example.com", event_type.pk)

    assert result["sent"] is True and result["provider"] == "default"
    [email] = outbox
    assert email.to == ["qa@example.com"]
    assert email.subject == "[Test] Order A-10472 confirmed"
    assert email.extra_headers["X-Template-Version"] == str(version.pk)
    html = email.alternatives[0][0]
    assert "Fountain pen" in html and "2 × Notebook" in html
    assert "A-10472" in email.body


def test_the_task_reports_a_version_that_does_not_render(outbox) -> None:
    template = EventTypeFactory().template
    version = template_version_create(
        template=template, locale="en", subject="s",
        html_body="{% for a, b in pairs %}{% endfor %}", activate=False)
    event_type = EventTypeFactory(template=template, sample_data={"pairs": [[1, 2, 3]]})

    result = tasks.send_test_email(version.pk, "qa@example.com", event_type.pk)

    assert result["sent"] is False and "Need 2 values" in result["error"]
    assert outbox == []


def test_demo_sample_data_fits_each_schema_and_renders() -> None:
    seed_demo()

    for spec in DEMO:
        event_type = EventType.objects.get(key=spec["event"])
        assert event_type.sample_data == spec["sample"]
        jsonschema.validate(event_type.sample_data, spec["schema"])
        version = event_type.template.versions.get(is_active=True)
        rendered = render_version(version, sample_data_for(event_type=event_type))
        assert rendered.subject.strip()


def test_seed_demo_fills_missing_sample_data_once_and_keeps_edits() -> None:
    seed_demo()
    EventType.objects.filter(key="user.registered").update(sample_data={})
    EventType.objects.filter(key="order.placed").update(sample_data={"order_id": "mine"})

    assert seed_demo() == []

    assert EventType.objects.get(key="user.registered").sample_data["username"] == "ada.lovelace"
    assert EventType.objects.get(key="order.placed").sample_data == {"order_id": "mine"}
    assert EventType.objects.count() == len(DEMO)
