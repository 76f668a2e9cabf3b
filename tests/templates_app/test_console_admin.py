"""The template console pages: the editor's draft preview, diff, activation behind a blast-radius
confirmation, test sends; what viewers and operators may do; CSRF on every form."""

from __future__ import annotations

import json
from html import unescape
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse

from notifications.models import AuditAction, AuditEntry, EventType, Lane, Message, Status
from notifications.services import notify
from templates_app.models import TemplateVersion
from templates_app.services import template_version_create

pytestmark = pytest.mark.django_db

ADD_URL = reverse("admin:templates_app_templateversion_add")
DRAFT_URL = reverse("admin:templates_app_templateversion_draft_preview")
DIFF_URL = reverse("admin:templates_app_templateversion_diff")
CHANGELIST = reverse("admin:templates_app_templateversion_changelist")


def _client(django_user_model: Any, group: str, *, csrf: bool = False) -> Client:
    user = django_user_model.objects.create_user(
        username=f"{group}-user", password="pw", is_staff=True, email=f"{group}@example.com")
    user.groups.add(Group.objects.get(name=group))
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(user)
    return client


@pytest.fixture
def operator(django_user_model: Any) -> Client:
    return _client(django_user_model, "operators")


@pytest.fixture
def viewer(django_user_model: Any) -> Client:
    return _client(django_user_model, "viewers")


@pytest.fixture
def order(demo: None, no_wakeups: list[str]) -> EventType:
    return EventType.objects.select_related("template").get(key="order.placed")


@pytest.fixture
def versions(order: EventType) -> tuple[TemplateVersion, TemplateVersion]:
    """v1 (the demo's) and v2, active, with different subject and HTML."""
    v1 = order.template.versions.get()
    v2 = template_version_create(
        template=order.template, locale="en", subject="Your order {{ order_id }}",
        html_body="<h1>Order</h1>\n<p>Total <script>x</script>{{ total }}</p>")
    return v1, v2


def _url(name: str, version: TemplateVersion) -> str:
    return reverse(f"admin:templates_app_templateversion_{name}", args=[version.pk])


def _srcdoc(body: str) -> str:
    return unescape(body.split('srcdoc="', 1)[1].split('"', 1)[0])


# --- the editor and its draft preview ------------------------------------------------------------

def test_the_editor_opens_with_the_draft_rendered_with_sample_data(operator, order) -> None:
    response = operator.get(ADD_URL, {"template": order.template_id, "locale": "en"})

    body = response.content.decode()
    assert response.status_code == 200
    assert 'id="draft-preview-button"' in body
    assert '<iframe sandbox=""' in body
    assert "2 × Notebook" in _srcdoc(body)
    assert "Order A-10472 confirmed" in body.split('id="draft-preview-subject">', 1)[1]
    assert "Fountain pen" in body.split('class="preview-text">', 1)[1]
    # The event type using this template is preselected; others can be chosen.
    assert f'<option value="{order.pk}" selected>' in body
    assert "user.registered" in body


def test_the_draft_preview_renders_unsaved_sources_and_saves_nothing(operator, order) -> None:
    before = TemplateVersion.objects.count()

    response = operator.post(DRAFT_URL, {
        "subject": "Draft {{ order_id }}", "html_body": "<p>{{ items.0.name }} <b>x</b></p>",
        "text_body": "", "event_type": order.pk})

    answer = response.json()
    assert response.status_code == 200
    assert answer["errors"] == []
    assert answer["subject"] == "Draft A-10472"
    assert "Notebook" in answer["html"] and "**x**" in answer["text"]
    assert TemplateVersion.objects.count() == before


def test_the_draft_preview_shows_errors_with_their_line(operator, order) -> None:
    compile_error = operator.post(DRAFT_URL, {
        "subject": "ok", "html_body": "<p>a</p>\n<p>b</p>\n{% include 'x.html' %}",
        "event_type": order.pk}).json()
    render_error = operator.post(DRAFT_URL, {
        "subject": "ok", "html_body": "<p>a</p>\n{% for a, b, c in items %}{% endfor %}",
        "event_type": order.pk}).json()

    assert compile_error["errors"] == [
        "HTML, line 3: Invalid block tag on line 3: 'include'. This tag does not exist or is not "
        "allowed in email templates."]
    assert compile_error["html"] == ""
    assert "at line 2" in render_error["errors"][0]


def test_the_draft_preview_answers_bad_input_with_400(operator, order) -> None:
    response = operator.post(DRAFT_URL, {"subject": "s", "event_type": "nope"})
    get = operator.get(DRAFT_URL)

    assert response.status_code == 400
    assert "event_type" in response.json()["errors"][0]
    assert get.status_code == 405


def test_a_failed_save_shows_the_error_line_on_the_field_and_in_the_preview(
    operator, order
) -> None:
    response = operator.post(ADD_URL, {
        "template": order.template_id, "locale": "en", "subject": "s",
        "html_body": "<p>a</p>\n{% debug %}", "text_body": "", "activate": "on"})

    body = response.content.decode()
    assert response.status_code == 200
    assert "Line 2: Invalid block tag on line 2: &#x27;debug&#x27;" in body
    assert "HTML, line 2: Invalid block tag" in body.split('id="draft-preview-errors"', 1)[1]
    assert order.template.versions.count() == 1


def test_an_operator_saves_a_new_version_audited(operator, order) -> None:
    response = operator.post(ADD_URL, {
        "template": order.template_id, "locale": "en", "subject": "New {{ order_id }}",
        "html_body": "<p>new</p>", "text_body": "", "activate": "on"})

    assert response.status_code == 302
    new = order.template.versions.get(is_active=True)
    assert new.subject == "New {{ order_id }}" and new.created_by.username == "operators-user"
    edit = AuditEntry.objects.get(action=AuditAction.TEMPLATE_EDIT)
    assert edit.username == "operators-user" and edit.filter["version"] == new.pk


# --- previews and diffs --------------------------------------------------------------------------

def test_the_version_preview_uses_the_chosen_event_types_sample_data(viewer, versions) -> None:
    v1, _ = versions
    other = EventType.objects.get(key="user.registered")

    default = viewer.get(_url("preview", v1))
    chosen = viewer.get(_url("preview", v1), {"event_type": other.pk})
    bad = viewer.get(_url("preview", v1), {"event_type": "x"})

    def subject(page: Any) -> str:
        return page.content.decode().split('id="draft-preview-subject">', 1)[1].split("<", 1)[0]

    assert subject(default) == "Order A-10472 confirmed"
    # user.registered's data has no order_id: the subject renders without it.
    assert subject(chosen) == "Order confirmed"
    assert bad.status_code == 200 and "Pick an event type" in bad.content.decode()


def test_the_diff_shows_each_field_escaped(viewer, versions) -> None:
    v1, v2 = versions

    response = viewer.get(DIFF_URL, {"template": v1.template_id, "old": v1.pk, "new": v2.pk})

    body = response.content.decode()
    assert response.status_code == 200
    subject = body.split('id="diff-subject">', 1)[1].split("<h2>", 1)[0]
    assert '<div class="del">-Order {{ order_id }} confirmed</div>' in subject
    assert '<div class="add">+Your order {{ order_id }}</div>' in subject
    html = body.split('id="diff-html_body">', 1)[1]
    assert "+&lt;p&gt;Total &lt;script&gt;x&lt;/script&gt;{{ total }}&lt;/p&gt;" in html
    assert "<script>x</script>" not in body


@pytest.mark.parametrize("params", [
    {"old": "abc", "new": "1"},
    {"old": "999999", "new": "999998"},
    {"template": "x", "old": "", "new": ""},
])
def test_the_diff_explains_bad_choices(viewer, versions, params) -> None:
    response = viewer.get(DIFF_URL, params)

    assert response.status_code == 200
    assert "errorlist" in response.content.decode()


def test_the_diff_refuses_versions_of_two_templates(viewer, versions) -> None:
    other = EventType.objects.get(key="user.registered").template.versions.get()

    response = viewer.get(DIFF_URL, {"old": versions[0].pk, "new": other.pk})

    assert "Pick two versions of the same template." in response.content.decode()


def test_the_diff_action_redirects_to_the_diff_of_the_two_selected(viewer, versions) -> None:
    v1, v2 = versions

    response = viewer.post(CHANGELIST, {"action": "diff_versions",
                                        "_selected_action": [v2.pk, v1.pk]})

    assert response.status_code == 302
    assert f"old={v1.pk}&new={v2.pk}" in response["Location"]


# --- activation and rollback ---------------------------------------------------------------------

def _queue(event: str, n: int, status: str = Status.PENDING) -> None:
    data = EventType.objects.get(key=event).sample_data
    made = [notify(event=event, to=f"u{i}@example.com", data=data) for i in range(n)]
    Message.objects.filter(pk__in=[m.pk for m in made]).update(status=status)


def test_the_rollback_page_shows_the_blast_radius_before_acting(operator, versions) -> None:
    v1, v2 = versions
    _queue("order.placed", 3)
    _queue("order.placed", 2, Status.RETRY)
    _queue("order.placed", 4, Status.SENT)

    response = operator.get(_url("activate", v1))

    body = response.content.decode()
    assert response.status_code == 200
    assert f"Roll back to {v1}?" in body
    assert '<span id="blast-radius-total">5</span>' in body
    assert "<tr><td>order.placed</td><td>transactional</td><td>5</td></tr>" in body
    assert "keep rendering from" in body
    v1.refresh_from_db()
    assert not v1.is_active  # a GET changes nothing


def test_the_blast_radius_says_more_than_the_cap(operator, versions, monkeypatch) -> None:
    v1, _ = versions
    monkeypatch.setattr("templates_app.selectors.BLAST_RADIUS_CAP", 2)
    _queue("order.placed", 3)

    response = operator.get(_url("activate", v1))

    assert '<span id="blast-radius-total">more than 2</span>' in response.content.decode()


def test_an_operator_rolls_back_and_it_is_audited(operator, versions) -> None:
    v1, v2 = versions
    _queue("order.placed", 2)

    response = operator.post(_url("activate", v1), {"reason": "v2 broke the total"})

    assert response.status_code == 302
    v1.refresh_from_db()
    v2.refresh_from_db()
    assert v1.is_active and not v2.is_active
    assert set(Message.objects.values_list("template_version_id", flat=True)) == {v2.pk}
    entry = AuditEntry.objects.filter(action=AuditAction.TEMPLATE_ACTIVATE).latest("id")
    assert (entry.username, entry.reason, entry.target) == (
        "operators-user", "v2 broke the total", str(v1))
    assert entry.filter["queued_pinned_to_replaced"] == 2


def test_the_template_page_offers_a_rollback_to_the_previous_version(operator, versions) -> None:
    v1, _ = versions

    response = operator.get(reverse("admin:templates_app_template_change",
                                    args=[v1.template_id]))

    body = response.content.decode()
    assert f'href="{_url("activate", v1)}">Roll back [en] to v{v1.pk}…' in body
    assert "Diff versions" in body


def test_activating_the_active_version_does_nothing(operator, versions) -> None:
    _, v2 = versions
    before = AuditEntry.objects.count()

    page = operator.get(_url("activate", v2))
    post = operator.post(_url("activate", v2), {"reason": ""})

    assert "already the active version" in page.content.decode()
    assert post.status_code == 200
    assert AuditEntry.objects.count() == before


def test_unknown_versions_are_404_not_500(operator) -> None:
    for name in ("activate", "test_send", "preview"):
        url = reverse(f"admin:templates_app_templateversion_{name}", args=["abc"])
        assert operator.get(url).status_code == 404
        url = reverse(f"admin:templates_app_templateversion_{name}", args=[999999])
        assert operator.get(url).status_code == 404


# --- test sends ----------------------------------------------------------------------------------

@pytest.fixture
def enqueued(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr("templates_app.services.async_task",
                        lambda *args, **kwargs: calls.append(args))
    return calls


def test_a_test_send_is_enqueued_audited_then_delivered_by_the_task(
    operator, versions, enqueued, outbox, django_capture_on_commit_callbacks
) -> None:
    v1, _ = versions
    order = EventType.objects.get(key="order.placed")

    with django_capture_on_commit_callbacks(execute=True):
        response = operator.post(_url("test_send", v1),
                                 {"to_email": "qa@example.com", "event_type": order.pk})

    assert response.status_code == 302
    assert outbox == []  # not sent in the web request
    [(task, *args)] = enqueued
    assert args == [v1.pk, "qa@example.com", order.pk]
    entry = AuditEntry.objects.get(action=AuditAction.TEMPLATE_TEST_SEND)
    assert entry.username == "operators-user" and entry.filter["to"] == "qa@example.com"

    from django.utils.module_loading import import_string
    import_string(task)(*args)

    [email] = outbox
    assert email.to == ["qa@example.com"]
    assert email.subject == "[Test] Order A-10472 confirmed"


@pytest.mark.parametrize("address", ["not-an-address", "", "a@b@c.com", "x" * 250 + "@e.com"])
def test_a_bad_address_is_a_form_error(operator, versions, enqueued, address) -> None:
    response = operator.post(_url("test_send", versions[0]), {"to_email": address})

    assert response.status_code == 200
    assert "errorlist" in response.content.decode()
    assert enqueued == []
    assert not AuditEntry.objects.filter(action=AuditAction.TEMPLATE_TEST_SEND).exists()


def test_a_version_that_does_not_render_with_the_sample_is_a_form_error(
    operator, order, enqueued
) -> None:
    version = template_version_create(
        template=order.template, locale="en", subject="s",
        html_body="{% for a, b, c in items %}{% endfor %}", activate=False)

    response = operator.post(_url("test_send", version),
                             {"to_email": "qa@example.com", "event_type": order.pk})

    assert response.status_code == 200
    assert "does not render with this sample data" in response.content.decode()
    assert enqueued == []


# --- roles and CSRF ------------------------------------------------------------------------------

def _action_urls(v1: TemplateVersion) -> list[tuple[str, dict[str, Any]]]:
    return [
        (ADD_URL, {"template": v1.template_id, "locale": "en", "subject": "s",
                   "html_body": "h", "activate": "on"}),
        (DRAFT_URL, {"subject": "s", "html_body": "h"}),
        (_url("activate", v1), {"reason": "r"}),
        (_url("test_send", v1), {"to_email": "qa@example.com"}),
    ]


def test_a_viewer_can_neither_reach_nor_post_any_action(viewer, versions, enqueued) -> None:
    v1, v2 = versions
    before = (TemplateVersion.objects.count(), AuditEntry.objects.count())

    for url, data in _action_urls(v1):
        assert viewer.get(url).status_code in (403, 405), url
        assert viewer.post(url, data).status_code == 403, url
    action = viewer.post(CHANGELIST, {"action": "activate_versions", "_selected_action": [v1.pk]})

    # Not one of the viewer's actions: Django says "No action selected" and changes nothing.
    assert action.status_code == 302 and action["Location"] == CHANGELIST
    v1.refresh_from_db()
    assert not v1.is_active
    assert (TemplateVersion.objects.count(), AuditEntry.objects.count()) == before
    assert enqueued == []


def test_a_viewer_sees_templates_versions_previews_and_diffs_but_no_actions(
    viewer, versions
) -> None:
    v1, v2 = versions
    pages = {
        "changelist": viewer.get(CHANGELIST),
        "version": viewer.get(_url("change", v1)),
        "template": viewer.get(reverse("admin:templates_app_template_change",
                                       args=[v1.template_id])),
        "preview": viewer.get(_url("preview", v1)),
        "diff": viewer.get(DIFF_URL, {"old": v1.pk, "new": v2.pk}),
    }

    for name, page in pages.items():
        body = page.content.decode()
        assert page.status_code == 200, name
        assert "Activate" not in body, name
        assert "Test send" not in body, name
        assert "Edit (new version)" not in body and "Roll back" not in body, name
        assert ADD_URL not in body, name
    assert "Diff the two selected versions" in pages["changelist"].content.decode()


def test_an_operator_sees_the_actions(operator, versions) -> None:
    v1, _ = versions

    version_page = operator.get(_url("change", v1)).content.decode()
    changelist = operator.get(CHANGELIST).content.decode()

    assert f'href="{_url("activate", v1)}">Activate…' in version_page
    assert f'href="{_url("test_send", v1)}">Test send…' in version_page
    assert "Activate this version" in changelist
    assert operator.get(_url("test_send", v1)).status_code == 200


def test_csrf_holds_on_every_form(django_user_model, versions, enqueued) -> None:
    v1, _ = versions
    client = _client(django_user_model, "operators", csrf=True)

    for url, data in [*_action_urls(v1), (CHANGELIST, {"action": "activate_versions",
                                                       "_selected_action": [v1.pk]})]:
        assert client.post(url, data).status_code == 403, url
    v1.refresh_from_db()
    assert not v1.is_active
    assert enqueued == []


def test_the_draft_preview_accepts_the_pages_csrf_token(django_user_model, order) -> None:
    client = _client(django_user_model, "operators", csrf=True)
    page = client.get(ADD_URL, {"template": order.template_id, "locale": "en"})
    token = page.content.decode().split('name="csrfmiddlewaretoken" value="', 1)[1].split('"')[0]

    response = client.post(DRAFT_URL, {"subject": "s", "html_body": "<p>{{ total }}</p>",
                                       "event_type": order.pk, "csrfmiddlewaretoken": token})

    assert response.status_code == 200
    assert "€42.50" in json.dumps(response.json(), ensure_ascii=False)


def test_lane_is_shown_for_bulk_event_types_too(operator, versions) -> None:
    # A template shared by a bulk event type: the breakdown is per event type and lane.
    v1, v2 = versions
    EventType.objects.filter(key="marketing.newsletter").update(template=v1.template)
    _queue("order.placed", 1)
    _queue("marketing.newsletter", 2)

    body = operator.get(_url("activate", v1)).content.decode()

    assert "<tr><td>marketing.newsletter</td><td>bulk</td><td>2</td></tr>" in body
    assert '<span id="blast-radius-total">3</span>' in body
    assert Lane.BULK == "bulk"


@pytest.mark.django_db(transaction=True)  # autocommit, as in production: on_commit runs at once
def test_a_task_queue_failure_is_a_form_error_not_a_500(admin_client, versions, monkeypatch):
    # admin_client, not an operator: an earlier transactional test may have flushed the groups.
    def broken(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr("templates_app.services.async_task", broken)

    response = admin_client.post(_url("test_send", versions[0]), {"to_email": "qa@example.com"})

    assert response.status_code == 200
    assert "could not be queued (broker unreachable)" in response.content.decode()
