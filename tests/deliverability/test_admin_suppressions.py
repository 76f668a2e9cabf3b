"""The suppression list in the admin: search and filters, add one address, remove entries
through the confirmation page, import and export CSV; every change audited, viewers read only."""

from __future__ import annotations

import csv
import io
import re
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import DatabaseError
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from notifications import suppression, suppression_import
from notifications.models import AuditAction, AuditEntry, Message, Status, Suppression
from notifications.models import SuppressionReason as R
from notifications.services import notify

CHANGELIST = "admin:notifications_suppression_changelist"
ADD = "admin:notifications_suppression_add"
IMPORT = "admin:notifications_suppression_import"
EXPORT = "admin:notifications_suppression_export"
ORDER = {"order_id": 1, "total": "1", "items": []}

pytestmark = pytest.mark.usefixtures("demo", "no_wakeups")


def order(to: str) -> Message:
    return notify(event="order.placed", to=to, data=ORDER)


def listed(client: Client, **params: Any) -> list[str]:
    page = client.get(reverse(CHANGELIST), params)
    assert page.status_code == 200
    return re.findall(r'<th class="field-email"><a [^>]*>([^<]+)</a>', page.content.decode())


def upload(content: str | bytes, name: str = "list.csv") -> SimpleUploadedFile:
    data = content.encode() if isinstance(content, str) else content
    return SimpleUploadedFile(name, data, content_type="text/csv")


# --- the list -----------------------------------------------------------------------------------

def test_it_searches_by_address_exactly_or_by_its_start(ops: Client) -> None:
    for email in ("ann@example.com", "annabel@example.org", "bob@example.com"):
        suppression.suppress(email=email, reason=R.HARD_BOUNCE)

    assert listed(ops, q="ANN@Example.com ") == ["ann@example.com"]
    assert sorted(listed(ops, q="Ann")) == ["ann@example.com", "annabel@example.org"]
    assert listed(ops, q="example.com") == []  # the start of an address, not a substring
    assert listed(ops, q="nobody@example.com") == []


def test_it_filters_by_reason_active_and_scope(ops: Client) -> None:
    suppression.suppress(email="c@example.com", reason=R.COMPLAINT)
    suppression.suppress(email="u@example.com", reason=R.UNSUBSCRIBE,
                         scope="newsletter")
    gone, _ = suppression.suppress(email="g@example.com", reason=R.MANUAL)
    Suppression.objects.filter(pk=gone.pk).update(active=False)

    assert listed(ops, reason="complaint") == ["c@example.com"]
    assert sorted(listed(ops, active__exact="1")) == ["c@example.com", "u@example.com"]
    assert listed(ops, active__exact="0") == ["g@example.com"]
    assert sorted(listed(ops, scope="*")) == ["c@example.com", "g@example.com"]
    assert listed(ops, scope="newsletter") == ["u@example.com"]
    page = ops.get(reverse(CHANGELIST)).content.decode()
    assert "all mail" in page and "newsletter" in page


# --- add ----------------------------------------------------------------------------------------

def test_an_operator_adds_an_address_with_a_reason_and_it_is_audited(ops: Client) -> None:
    response = ops.post(reverse(ADD), {"email": " Bob@Example.COM", "scope": "", "note": "asked",
                                       "reason": "customer asked by phone"})
    assert response.status_code == 302
    row = Suppression.objects.get()
    assert (row.email, row.scope, row.reason, row.active, row.note) == (
        "bob@example.com", "", R.MANUAL, True, "asked")
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.username, entry.reason, entry.count) == (
        AuditAction.SUPPRESS, "olga", "customer asked by phone", 1)
    assert "bob@example.com" in entry.target
    # What the operator wanted: no more mail to Bob.
    assert order("bob@example.com").status == Status.SUPPRESSED


@pytest.mark.parametrize("email", ["a+b@example.com", "a&q=x%41#b@example.com"])
def test_after_adding_the_list_shows_the_address_however_it_is_spelled(ops: Client,
                                                                        email: str) -> None:
    suppression.suppress(email="a@example.com", reason=R.HARD_BOUNCE)  # must not be listed

    response = ops.post(reverse(ADD), {"email": email, "scope": "", "reason": "asked"},
                        follow=True)

    assert response.status_code == 200
    assert response.context["cl"].query == email
    assert re.findall(r'<th class="field-email"><a [^>]*>([^<]+)</a>',
                      response.content.decode()) == [escape(email)]


def test_adding_for_one_category_leaves_other_mail_alone(ops: Client) -> None:
    ops.post(reverse(ADD), {"email": "ann@example.com", "scope": "newsletter",
                            "reason": "no newsletters"})
    assert Suppression.objects.get().scope == "newsletter"
    assert order("ann@example.com").status == Status.PENDING
    news = notify(event="marketing.newsletter", to="ann@example.com",
                  data={"headline": "h", "body": "b"})
    assert news.status == Status.SUPPRESSED


@pytest.mark.parametrize(("form", "error"), [
    ({"email": "not-an-address", "scope": "", "reason": "r"}, "Not a valid address"),
    ({"email": "ann@example.com", "scope": "", "reason": ""}, "This field is required"),
    ({"email": "ann@example.com", "scope": "no.such.category", "reason": "r"},
     "Select a valid choice"),
    ({"email": "a" * 250 + "@example.com", "scope": "", "reason": "r"}, "at most 254"),
])
def test_a_bad_add_form_says_why_and_saves_nothing(ops: Client, form: dict[str, str],
                                                   error: str) -> None:
    response = ops.post(reverse(ADD), form)
    assert response.status_code == 200
    assert error in response.content.decode()
    assert not Suppression.objects.exists() and not AuditEntry.objects.exists()


def test_adding_never_weakens_a_complaint(ops: Client) -> None:
    suppression.suppress(email="c@example.com", reason=R.COMPLAINT)
    response = ops.post(reverse(ADD), {"email": "c@example.com", "scope": "", "reason": "r"},
                        follow=True)
    assert "already suppressed" in response.content.decode()
    assert Suppression.objects.get().reason == R.COMPLAINT
    assert not AuditEntry.objects.exists()  # nothing changed, nothing to audit


# --- remove -------------------------------------------------------------------------------------

def remove(client: Client, rows: list[Suppression], **extra: str) -> Any:
    return client.post(reverse(CHANGELIST), {
        "action": "remove_suppressions", "_selected_action": [r.pk for r in rows], **extra})


def test_removing_asks_for_confirmation_and_a_reason_then_audits(ops: Client) -> None:
    ann, _ = suppression.suppress(email="ann@example.com", reason=R.HARD_BOUNCE)
    bob, _ = suppression.suppress(email="bob@example.com", reason=R.MANUAL)

    page = remove(ops, [ann, bob])
    assert page.status_code == 200
    text = page.content.decode()
    assert "Remove from the suppression list" in text
    assert '2 suppressions selected: <strong class="eligible">2</strong>' in text
    assert "1 of them bounced hard or complained" in text
    assert Suppression.objects.filter(active=True).count() == 2

    no_reason = remove(ops, [ann, bob], confirm="yes", reason="  ")
    assert no_reason.status_code == 200 and "This field is required" in no_reason.content.decode()
    assert Suppression.objects.filter(active=True).count() == 2

    done = remove(ops, [ann], confirm="yes", reason="mailbox fixed, customer confirmed")
    assert done.status_code == 302
    ann.refresh_from_db()
    assert ann.active is False  # deactivated, kept as history
    assert Suppression.objects.filter(active=True).get() == bob
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.username, entry.count, entry.reason) == (
        AuditAction.UNSUPPRESS, "olga", 1, "mailbox fixed, customer confirmed")
    assert order("ann@example.com").status == Status.PENDING  # mailed again
    assert order("bob@example.com").status == Status.SUPPRESSED


def test_nobody_deletes_or_edits_a_row(ops: Client) -> None:
    row, _ = suppression.suppress(email="ann@example.com", reason=R.MANUAL)
    change = reverse("admin:notifications_suppression_change", args=[row.pk])
    page = ops.get(change)
    assert page.status_code == 200 and 'name="email"' not in page.content.decode()
    assert ops.post(change, {"email": "x@example.com", "reason": "complaint"}).status_code == 403
    delete = reverse("admin:notifications_suppression_delete", args=[row.pk])
    assert ops.post(delete, {"post": "yes"}).status_code == 403
    assert "delete_selected" not in ops.get(reverse(CHANGELIST)).content.decode()
    row.refresh_from_db()
    assert (row.email, row.active) == ("ann@example.com", True)


def test_a_viewer_sees_the_list_but_cannot_add_remove_or_import(viewer_client: Client) -> None:
    row, _ = suppression.suppress(email="ann@example.com", reason=R.MANUAL)

    page = viewer_client.get(reverse(CHANGELIST))
    assert page.status_code == 200
    text = page.content.decode()
    assert "ann@example.com" in text and "remove_suppressions" not in text
    assert reverse(IMPORT) not in text and reverse(ADD) not in text
    assert viewer_client.get(reverse(EXPORT)).status_code == 200

    assert viewer_client.get(reverse(ADD)).status_code == 403
    assert viewer_client.post(reverse(ADD), {"email": "b@example.com", "scope": "",
                                      "reason": "r"}).status_code == 403
    assert remove(viewer_client, [row]).status_code == 403
    assert remove(viewer_client, [row], confirm="yes", reason="r").status_code == 403
    assert viewer_client.get(reverse(IMPORT)).status_code == 403
    assert viewer_client.post(reverse(IMPORT), {"file": upload("c@example.com\n"),
                                         "reason": "r"}).status_code == 403
    assert list(Suppression.objects.values_list("email", "active")) == [
        ("ann@example.com", True)]
    assert not AuditEntry.objects.exists()


# --- import -------------------------------------------------------------------------------------

def test_an_import_saves_the_good_rows_and_lists_the_bad_ones(ops: Client) -> None:
    suppression.suppress(email="old@example.com", reason=R.COMPLAINT)
    rows = "\n".join([
        "Email,Scope,Note",                                  # 1: header
        "Ann@Example.com,,from the old provider",             # 2: good
        "bob@example.com,newsletter,",              # 3: good, one category
        "not an address,,",                                   # 4: bad address
        "carl@example.com,no.such.thing,",                    # 5: unknown scope
        "",                                                   # 6: blank, skipped
        "a" * 300 + "@example.com,,",                         # 7: too long
        "old@example.com,all mail,",                          # 8: already (a complaint)
        "dora@example.com",                                   # 9: good, email only
        "ann@example.com,,again",                             # 10: repeat: unchanged
    ]) + "\n"
    response = ops.post(reverse(IMPORT), {"file": upload(rows), "reason": "migrating lists"})
    assert response.status_code == 200
    text = response.content.decode()
    errors = re.findall(r"<tr><td>(\d+)</td><td>[^<]*</td><td>([^<]*)</td></tr>", text)
    assert [(int(line), problem.split(":")[0].split(" (")[0]) for line, problem in errors] == [
        (4, "not a valid address"), (5, "unknown scope &#x27;no.such.thing&#x27;"),
        (7, "too long")]

    assert sorted(Suppression.objects.values_list("email", "scope", "reason", "source")) == [
        ("ann@example.com", "", R.MANUAL, "import"),
        ("bob@example.com", "newsletter", R.MANUAL, "import"),
        ("dora@example.com", "", R.MANUAL, "import"),
        ("old@example.com", "", R.COMPLAINT, ""),  # never weakened by an import
    ]
    assert Suppression.objects.get(email="ann@example.com").note == "from the old provider"
    entry = AuditEntry.objects.get()  # one entry for the whole import, none per row
    assert (entry.action, entry.username, entry.count, entry.reason) == (
        AuditAction.SUPPRESS_IMPORT, "olga", 3, "migrating lists")
    assert entry.filter == {"file": "list.csv", "rows": 5, "changed": 3, "unchanged": 2,
                            "refused": 3}
    assert '<strong class="saved">5</strong>' in text and '<strong class="refused">3' in text


def test_an_import_without_a_header_takes_the_columns_in_order(ops: Client) -> None:
    ops.post(reverse(IMPORT), {"file": upload("ann@example.com,newsletter,n1\n"
                                              "bob@example.com,,,extra\n"), "reason": "r"})
    assert list(Suppression.objects.values_list("email", "scope", "note")) == [
        ("ann@example.com", "newsletter", "n1")]


@pytest.mark.parametrize(("content", "error"), [
    (b"ann@example.com\n" + b"\xff\xfe broken\n", "not UTF-8"),
    (b"ann@example.com\x00,\n", "NUL"),
    (b'ann@example.com,"unclosed\n', "not valid CSV"),
])
def test_an_unreadable_file_is_refused_whole(ops: Client, content: bytes, error: str) -> None:
    response = ops.post(reverse(IMPORT), {"file": upload(content), "reason": "r"})
    assert response.status_code == 200 and error in response.content.decode()
    assert not Suppression.objects.exists() and not AuditEntry.objects.exists()


def test_too_many_rows_or_bytes_are_refused_with_a_clear_message(
        ops: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(suppression_import, "MAX_ROWS", 3)
    four = "".join(f"r{n}@example.com\n" for n in range(4))
    response = ops.post(reverse(IMPORT), {"file": upload(four), "reason": "r"})
    assert "more than 3 rows: split it" in response.content.decode()
    assert not Suppression.objects.exists()

    big = b"a@example.com\n" * (5 * 1024 * 1024 // 14 + 1)  # just over 5 MB
    response = ops.post(reverse(IMPORT), {"file": upload(big), "reason": "r"})
    assert response.status_code == 200
    assert "larger than 5 MB: split it" in response.content.decode()
    assert not Suppression.objects.exists() and not AuditEntry.objects.exists()


def test_an_import_needs_a_reason_and_a_file(ops: Client) -> None:
    response = ops.post(reverse(IMPORT), {"file": upload("ann@example.com\n"), "reason": ""})
    assert response.status_code == 200 and "This field is required" in response.content.decode()
    assert ops.post(reverse(IMPORT), {"reason": "r"}).status_code == 200
    assert not Suppression.objects.exists()


def test_an_import_that_fails_part_way_writes_nothing_unaudited(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(suppression_import, "CHUNK", 2)
    real = suppression.suppress_many
    calls: list[int] = []

    def third_chunk_fails(*args: Any, **kwargs: Any) -> int:
        calls.append(1)
        if len(calls) == 3:
            raise DatabaseError("connection lost")
        return real(*args, **kwargs)

    monkeypatch.setattr(suppression, "suppress_many", third_chunk_fails)
    five = "".join(f"r{n}@example.com\n" for n in range(5))

    with pytest.raises(DatabaseError):
        suppression_import.suppressions_import(data=five.encode(), filename="list.csv",
                                               user="olga", reason="r")

    assert len(calls) == 3  # two chunks were saved before the third failed
    assert not Suppression.objects.exists() and not AuditEntry.objects.exists()
    assert order("r0@example.com").status == Status.PENDING


# --- export -------------------------------------------------------------------------------------

def exported(client: Client, **params: Any) -> list[list[str]]:
    response = client.get(reverse(EXPORT), params)
    assert response.status_code == 200 and response["Content-Type"] == "text/csv"
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_the_export_is_the_filtered_list_and_formula_safe(ops: Client) -> None:
    suppression.suppress(email="=1+2@example.com", reason=R.MANUAL,
                         note='=HYPERLINK("http://evil.example","x")')
    suppression.suppress(email="ann@example.com", reason=R.COMPLAINT, note="@SUM(A1)")
    suppression.suppress(email="bob@example.com", reason=R.HARD_BOUNCE)

    rows = exported(ops)
    assert rows[0][:6] == ["email", "scope", "reason", "active", "source", "note"]
    by_email = {r[0]: r for r in rows[1:]}
    assert set(by_email) == {"'=1+2@example.com", "ann@example.com", "bob@example.com"}
    assert by_email["'=1+2@example.com"][5] == "'=HYPERLINK(\"http://evil.example\",\"x\")"
    assert by_email["ann@example.com"][5] == "'@SUM(A1)"

    assert [r[0] for r in exported(ops, reason="complaint")[1:]] == ["ann@example.com"]
    assert [r[0] for r in exported(ops, q="bob@EXAMPLE.com")[1:]] == ["bob@example.com"]
    assert ops.get(reverse(EXPORT), {"active__exact": "maybe"}).status_code == 400


def test_an_export_imports_again(ops: Client) -> None:
    suppression.suppress(email="ann@example.com", reason=R.MANUAL, scope="newsletter",
                         note="n")
    content = b"".join(ops.get(reverse(EXPORT)).streaming_content)
    Suppression.objects.all().delete()
    ops.post(reverse(IMPORT), {"file": upload(content), "reason": "restore"})
    assert list(Suppression.objects.values_list("email", "scope", "note", "active")) == [
        ("ann@example.com", "newsletter", "n", True)]


@pytest.mark.parametrize("before", [
    None, (R.MANUAL, False), (R.UNSUBSCRIBE, True), (R.UNSUBSCRIBE, False),
    (R.COMPLAINT, True), (R.COMPLAINT, False), (R.HARD_BOUNCE, True), (R.MANUAL, True),
])
def test_an_import_follows_the_rule_of_a_single_suppress(
        ops: Client, before: tuple[R, bool] | None) -> None:
    """The import saves in bulk (suppression.suppress_many): each row must end as
    suppression.suppress leaves the same row."""
    if before is not None:
        for email in ("imported@example.com", "single@example.com"):
            row, _ = suppression.suppress(email=email, reason=before[0], note="old")
            Suppression.objects.filter(pk=row.pk).update(active=before[1])
    _, changed = suppression.suppress(email="single@example.com", reason=R.MANUAL,
                                      source="import", note="new")
    response = ops.post(reverse(IMPORT), {"file": upload("imported@example.com,,new\n"),
                                          "reason": "r"})
    assert f'<span class="changed">{int(changed)}</span>' in response.content.decode()
    fields = ("active", "reason", "source", "note", "scope")
    assert Suppression.objects.values(*fields).get(email="imported@example.com") == \
        Suppression.objects.values(*fields).get(email="single@example.com")
