"""The unsubscribe link's view: RFC 8058 one-click POSTs from mail clients (no cookie, session
or CSRF token), the page a person sees, its preferences form, and every bad input a 4xx."""

from __future__ import annotations

import email
import re
import time
import urllib.error
import urllib.request
from html.parser import HTMLParser
from typing import Any

import pytest
from django.core.mail import EmailMessage
from django.test import Client
from django.urls import reverse

from notifications import suppression
from notifications.delivery import drain_lane
from notifications.models import Message, Status, Suppression, SuppressionReason
from notifications.services import notify
from notifications.unsubscribe import token_for
from notifications.unsubscribe_views import MAX_BODY_BYTES

NEWS = {"headline": "June news", "body": "Things happened."}
ORDER = {"order_id": 7, "total": "$5", "items": [{"name": "Tea", "qty": 1}]}
ONE_CLICK = "List-Unsubscribe=One-Click"
FORM = "application/x-www-form-urlencoded"

pytestmark = pytest.mark.usefixtures("demo", "no_wakeups")


@pytest.fixture
def client() -> Client:
    """A mail client: no cookies, and CSRF enforced as for any real request."""
    return Client(enforce_csrf_checks=True)


def url(email: str = "ann@example.com", category: str = "newsletter") -> str:
    return reverse("unsubscribe", args=[token_for(email, category)])


def rows() -> list[tuple[str, str, str, bool, str]]:
    return sorted(Suppression.objects.values_list("email", "scope", "reason", "active", "source"))


def checkboxes(response: Any) -> dict[tuple[str, str], bool]:
    """The page's checkboxes as {(name, value): checked}."""
    found: dict[tuple[str, str], bool] = {}

    class Parser(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            a = dict(attrs)
            if tag == "input" and a.get("type") == "checkbox":
                found[(a.get("name") or "", a.get("value") or "")] = "checked" in a

    Parser().feed(response.content.decode())
    return found


def assert_no_cookie(response: Any) -> None:
    assert not response.cookies and "Set-Cookie" not in response.headers


# --- one-click ------------------------------------------------------------------------------------

def test_a_one_click_post_stops_the_next_bulk_email_but_not_a_receipt(
    client: Client, outbox: list[EmailMessage],
) -> None:
    queued_before = notify(event="marketing.newsletter", to="ann@example.com", data=NEWS)
    started = time.monotonic()

    response = client.post(url("Ann@Example.com"), ONE_CLICK, content_type=FORM)

    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    assert "Location" not in response.headers
    assert_no_cookie(response)
    assert rows() == [("ann@example.com", "newsletter", "unsubscribe", True, "one-click")]
    queued_after = notify(event="marketing.newsletter", to="ann@example.com", data=NEWS)
    receipt = notify(event="order.placed", to="ann@example.com", data=ORDER)
    other = notify(event="marketing.newsletter", to="bob@example.com", data=NEWS)
    drain_lane("bulk", budget=5.0)
    drain_lane("transactional", budget=5.0)

    assert time.monotonic() - started < 60
    statuses = dict(Message.objects.values_list("pk", "status"))
    assert statuses[queued_before.pk] == Status.SUPPRESSED  # stopped when the drain claimed it
    assert statuses[queued_after.pk] == Status.SUPPRESSED  # stopped at ingest
    assert (statuses[receipt.pk], statuses[other.pk]) == (Status.SENT, Status.SENT)
    assert sorted(m.to[0] + " " + m.subject for m in outbox) == [
        "ann@example.com Order 7 confirmed", "bob@example.com June news"]


def test_a_multipart_one_click_post_unsubscribes_too(client: Client) -> None:
    response = client.post(url(), {"List-Unsubscribe": "One-Click"})  # multipart/form-data

    assert response.status_code == 200
    assert_no_cookie(response)
    assert rows() == [("ann@example.com", "newsletter", "unsubscribe", True, "one-click")]


def test_a_repeated_one_click_post_is_answered_the_same_and_writes_one_row(
    client: Client,
) -> None:
    first = client.post(url(), ONE_CLICK, content_type=FORM)
    second = client.post(url(), ONE_CLICK, content_type=FORM)

    assert (first.status_code, second.status_code) == (200, 200)
    assert Suppression.objects.count() == 1


def test_a_one_click_post_to_the_link_without_its_slash_is_answered_there(
    client: Client,
) -> None:
    response = client.post(url().rstrip("/"), ONE_CLICK, content_type=FORM)

    assert response.status_code == 200
    assert Suppression.objects.filter(scope="newsletter").exists()


def test_a_one_click_post_never_weakens_a_stronger_suppression(client: Client) -> None:
    suppression.suppress(email="ann@example.com", reason=SuppressionReason.COMPLAINT,
                         scope="newsletter", source="ses complained")

    assert client.post(url(), ONE_CLICK, content_type=FORM).status_code == 200
    assert rows() == [("ann@example.com", "newsletter", "complaint", True, "ses complained")]


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx is then raised as an HTTPError: one-click must be answered in place


def test_a_real_http_client_without_cookies_unsubscribes_with_the_link_it_was_mailed(
    live_server: Any, outbox: list[EmailMessage], settings: Any,
) -> None:
    """End to end: the link taken from the sent email's header, POSTed over HTTP by urllib
    (no cookie jar, no CSRF token), as a mailbox provider does."""
    settings.NOTIFY_DELIVERABILITY = {**settings.NOTIFY_DELIVERABILITY,
                                      "PUBLIC_URL": live_server.url}
    notify(event="marketing.newsletter", to="ann@example.com", data=NEWS)
    drain_lane("bulk", budget=5.0)
    sent = email.message_from_bytes(outbox[0].message().as_bytes())
    [link] = re.findall(r"<(http[^>]+)>", str(sent["List-Unsubscribe"]))
    assert link.startswith(live_server.url + "/u/")
    opener = urllib.request.build_opener(_NoRedirects)

    request = urllib.request.Request(link, data=ONE_CLICK.encode(), method="POST",
                                     headers={"Content-Type": FORM})
    with opener.open(request, timeout=10) as response:
        status, headers, body = response.status, response.headers, response.read()

    assert status == 200 and b"Unsubscribed from newsletter" in body
    assert headers.get("Set-Cookie") is None
    later = notify(event="marketing.newsletter", to="ann@example.com", data=NEWS)
    drain_lane("bulk", budget=5.0)
    later.refresh_from_db()
    assert later.status == Status.SUPPRESSED and len(outbox) == 1
    altered = link[:-3] + ("xx/" if not link.endswith("xx/") else "yy/")
    with pytest.raises(urllib.error.HTTPError) as refused:
        opener.open(urllib.request.Request(altered, data=ONE_CLICK.encode(), method="POST",
                                           headers={"Content-Type": FORM}), timeout=10)
    assert refused.value.code == 400


# --- the page -------------------------------------------------------------------------------------

def test_get_shows_the_page_and_never_unsubscribes(client: Client) -> None:
    response = client.get(url())
    head = client.head(url())

    assert (response.status_code, head.status_code) == (200, 200)
    body = response.content.decode()
    assert "a***@example.com" in body and "ann@example.com" not in body
    assert "<strong>newsletter</strong>" in body and ">Unsubscribe</button>" in body
    assert checkboxes(response) == {("subscribed", "newsletter"): True, ("everything", "1"): False}
    assert "Unsubscribe from everything" in body
    assert "<link" not in body and "<script" not in body and "src=" not in body  # standalone
    assert "no-store" in response["Cache-Control"]
    assert_no_cookie(response)
    assert Suppression.objects.count() == 0


def test_the_page_button_unsubscribes_from_the_links_category(client: Client) -> None:
    response = client.post(url(), "action=unsubscribe", content_type=FORM)

    assert response.status_code == 200
    assert "You will no longer get newsletter emails." in response.content.decode()
    assert "You do not get <strong>newsletter</strong>" in response.content.decode()
    assert rows() == [("ann@example.com", "newsletter", "unsubscribe", True, "unsubscribe page")]


def test_the_preferences_form_unsubscribes_from_everything_then_resubscribes(
    client: Client, event_type: Any,
) -> None:
    """Checked = subscribed; 'everything' is the "" scope. event_type is a second category."""
    other = event_type.unsubscribe_category
    everything = client.post(url(), f"action=preferences&subscribed={other}&everything=1",
                             content_type=FORM)

    assert everything.status_code == 200 and "preferences are saved" in everything.content.decode()
    assert rows() == [("ann@example.com", "", "unsubscribe", True, "preferences page"),
                      ("ann@example.com", "newsletter", "unsubscribe", True, "preferences page")]
    assert checkboxes(client.get(url())) == {
        ("subscribed", "newsletter"): False, ("subscribed", other): True,
        ("everything", "1"): True}

    back = client.post(url(), f"action=preferences&subscribed=newsletter&subscribed={other}",
                       content_type=FORM)

    assert back.status_code == 200
    assert [r[3] for r in rows()] == [False, False]
    assert suppression.unsubscribed_categories("ann@example.com") == set()


def test_resubscribing_never_lifts_a_bounce_and_ignores_categories_it_did_not_offer(
    client: Client, outbox: list[EmailMessage],
) -> None:
    suppression.suppress(email="ann@example.com", reason=SuppressionReason.HARD_BOUNCE,
                         source="ses bounced")

    response = client.post(url(), "action=preferences&subscribed=newsletter&subscribed=made-up",
                           content_type=FORM)

    assert response.status_code == 200
    assert rows() == [("ann@example.com", "", "hard_bounce", True, "ses bounced")]
    message = notify(event="marketing.newsletter", to="ann@example.com", data=NEWS)
    drain_lane("bulk", budget=5.0)
    message.refresh_from_db()
    assert message.status == Status.SUPPRESSED and outbox == []


def test_a_post_with_nothing_to_do_is_a_400_and_writes_nothing(client: Client) -> None:
    for body in ("", "List-Unsubscribe=Something", "action=other"):
        response = client.post(url(), body, content_type=FORM)
        assert response.status_code == 400, body
    assert Suppression.objects.count() == 0


# --- bad tokens and bad requests ------------------------------------------------------------------

@pytest.mark.parametrize("alter", [
    lambda t: t[:-2] + ("xy" if not t.endswith("xy") else "yz"),  # the signature
    lambda t: "W" + t[1:] if not t.startswith("W") else "X" + t[1:],  # the payload
    lambda t: t.split(":")[0],
    lambda t: "not-a-token",
    lambda t: "%FF%FE",
    lambda t: "x" * 3000,
])
def test_an_altered_token_is_a_400_and_changes_nothing(client: Client, alter: Any) -> None:
    token = alter(token_for("ann@example.com", "newsletter"))
    link = f"/u/{token}/"

    for response in (client.get(link), client.post(link, ONE_CLICK, content_type=FORM),
                     client.post(link, {"List-Unsubscribe": "One-Click"}),
                     client.post(link, "action=preferences&everything=1", content_type=FORM)):
        assert response.status_code == 400
        assert "This link does not work" in response.content.decode()
        assert_no_cookie(response)
    assert Suppression.objects.count() == 0


@pytest.mark.parametrize("method", ["put", "patch", "delete", "options"])
def test_other_methods_are_a_405(client: Client, method: str) -> None:
    response = getattr(client, method)(url(), ONE_CLICK, content_type=FORM)

    assert response.status_code == 405 and "POST" in response["Allow"]
    assert Suppression.objects.count() == 0


def test_a_huge_body_is_a_413_before_it_is_read(client: Client) -> None:
    body = ONE_CLICK + "&pad=" + "x" * MAX_BODY_BYTES

    response = client.post(url(), body, content_type=FORM)

    assert response.status_code == 413
    assert Suppression.objects.count() == 0


@pytest.mark.parametrize(("body", "content_type", "status"), [
    # Not UTF-8: decoded with replacement characters; the one-click field is still there.
    (b"List-Unsubscribe=One-Click&junk=\xff\xfe\x80", FORM, 200),
    (b"\xff\xfe\x80", FORM, 400),
    # A form that says it is not UTF-8 (Django refuses those).
    (ONE_CLICK.encode(), FORM + "; charset=latin-1", 400),
    # A charset Python does not know is ignored by Django: read as UTF-8.
    (ONE_CLICK.encode(), FORM + "; charset=no-such-charset", 200),
    # Multipart without a boundary, and with a broken one.
    (ONE_CLICK.encode(), "multipart/form-data", 400),
    (b"--b\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nOne-Click",
     "multipart/form-data; boundary=b", 200),
    (b"\xff" * 100, "multipart/form-data; boundary=b", 400),
    # No Content-Type a form would have: read leniently as urlencoded.
    (ONE_CLICK.encode(), "text/plain", 200),
    (b"\x00\xff", "application/octet-stream", 400),
])
def test_odd_bodies_get_a_clear_answer_never_a_500(
    client: Client, body: bytes, content_type: str, status: int,
) -> None:
    response = client.generic("POST", url(), body, content_type=content_type)

    assert response.status_code == status, response.content
    assert Suppression.objects.filter(scope="newsletter").exists() is (status == 200)


def test_a_content_length_that_is_not_a_number_is_a_400(client: Client) -> None:
    response = client.generic("POST", url(), ONE_CLICK.encode(), content_type=FORM,
                              CONTENT_LENGTH="lots")

    assert response.status_code == 400
    assert Suppression.objects.count() == 0
