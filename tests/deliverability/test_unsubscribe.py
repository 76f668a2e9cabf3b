"""Unsubscribe tokens, the List-Unsubscribe headers and footer link of drained email, and the
demo's categories (notifications/unsubscribe.py, delivery.build_email, content, demo)."""

from __future__ import annotations

import base64
import email
import email.policy
import json
import re
from typing import Any

import pytest
from django.core import signing
from django.core.mail import EmailMessage
from django.urls import reverse

from notifications import unsubscribe
from notifications.delivery import drain_lane
from notifications.demo import NEWSLETTER_V1, seed_demo
from notifications.models import EventType, Suppression, SuppressionReason
from notifications.services import notify
from notifications.unsubscribe import InvalidToken, read_token, token_for
from templates_app.models import Template, TemplateVersion
from templates_app.rendering import render_version

NEWS = {"headline": "June news", "body": "Things happened."}
ORDER = {"order_id": 7, "total": "$5", "items": [{"name": "Tea", "qty": 1}]}

pytestmark = pytest.mark.usefixtures("demo", "no_wakeups")


def sent_headers(sent: EmailMessage) -> email.message.EmailMessage:
    """The headers as they go on the wire (parsed back from the message's bytes, unfolded)."""
    return email.message_from_bytes(sent.message().as_bytes(), policy=email.policy.default)


def links(sent: EmailMessage) -> list[str]:
    """The URIs of the List-Unsubscribe header as sent (RFC 2369: each in angle brackets)."""
    return re.findall(r"<([^>]+)>", sent_headers(sent)["List-Unsubscribe"])


def token_in(url: str) -> str:
    return url.rsplit("/u/", 1)[1].rstrip("/")


# --- tokens ---------------------------------------------------------------------------------------

def test_it_round_trips_a_token_with_the_address_normalized() -> None:
    token = token_for("  Ann.Lee@Example.COM ", "newsletter")

    assert read_token(token) == ("ann.lee@example.com", "newsletter")
    assert token == token_for("ann.lee@example.com", "newsletter")  # deterministic
    assert token != token_for("ann.lee@example.com", "offers")
    assert len(token) < 120 and reverse("unsubscribe", args=[token]).endswith(f"/{token}/")


@pytest.mark.parametrize("alter", [
    lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # the signature
    lambda t: ("X" if t[0] != "X" else "Y") + t[1:],  # the payload
    lambda t: t[: len(t) // 2],  # cut in the middle
    lambda t: t.split(":")[0],  # no signature
    lambda t: t + "extra",
    lambda t: "",
    lambda t: "x" * 5000,
])
def test_it_refuses_an_altered_token(alter: Any) -> None:
    token = token_for("ann@example.com", "newsletter")

    with pytest.raises(InvalidToken):
        read_token(alter(token))


def test_a_token_for_another_address_cannot_be_made_by_editing_the_payload() -> None:
    token = token_for("ann@example.com", "newsletter")
    _, signature = token.split(":")
    forged = signing.b64_encode(b'["bob@example.com","newsletter"]').decode() + ":" + signature

    with pytest.raises(InvalidToken):
        read_token(forged)


def test_a_token_is_bound_to_the_secret_key_and_its_salt(settings: Any) -> None:
    token = token_for("ann@example.com", "newsletter")
    other_salt = signing.Signer(salt="something.else").sign_object(
        ["ann@example.com", "newsletter"])

    with pytest.raises(InvalidToken):
        read_token(other_salt)
    settings.SECRET_KEY, old = "another-secret-key-" * 3, settings.SECRET_KEY
    with pytest.raises(InvalidToken):
        read_token(token)
    # Links already mailed keep working while the old key is a fallback.
    settings.SECRET_KEY_FALLBACKS = [old]
    assert read_token(token) == ("ann@example.com", "newsletter")


def test_a_well_signed_token_of_the_wrong_shape_is_refused() -> None:
    signer = signing.Signer(salt=unsubscribe.SALT)

    for value in (["ann@example.com"], {"email": "ann@example.com"}, ["no-at-sign", "x"],
                  ["ann@example.com", 5]):
        with pytest.raises(InvalidToken):
            read_token(signer.sign_object(value))


# --- headers and footer on drained email ----------------------------------------------------------

def test_a_bulk_email_carries_one_click_list_unsubscribe_headers(
    outbox: list[EmailMessage], settings: Any,
) -> None:
    settings.NOTIFY_DELIVERABILITY = {**settings.NOTIFY_DELIVERABILITY,
                                      "PUBLIC_URL": "https://mail.example.org"}
    notify(event="marketing.newsletter", to="Ann@Example.com", data=NEWS)

    drain_lane("bulk", budget=5.0)

    [sent] = outbox
    headers = sent_headers(sent)
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    [url] = links(sent)  # no mailto: none configured
    assert url.startswith("https://mail.example.org/u/") and url.endswith("/")
    assert read_token(token_in(url)) == ("ann@example.com", "newsletter")


def test_the_mailto_link_is_added_when_an_address_is_configured(
    outbox: list[EmailMessage], settings: Any,
) -> None:
    settings.NOTIFY_DELIVERABILITY = {**settings.NOTIFY_DELIVERABILITY,
                                      "UNSUBSCRIBE_MAILTO": "unsub@example.org"}
    notify(event="marketing.newsletter", to="ann@example.com", data=NEWS)

    drain_lane("bulk", budget=5.0)

    [sent] = outbox
    https, mailto = links(sent)
    assert https.startswith("http://localhost") and "/u/" in https
    assert mailto == f"mailto:unsub@example.org?subject=unsubscribe-{token_in(https)}"


def inbound(client: Any, subject: str) -> Any:
    """A reply arriving through Postmark's inbound webhook (the JSON Postmark posts)."""
    body = {"FromName": "Ann", "From": "ann@example.com",
            "FromFull": {"Email": "ann@example.com", "Name": "Ann"},
            "To": "unsub@example.org", "ToFull": [{"Email": "unsub@example.org", "Name": ""}],
            "Subject": subject, "MessageID": "73e6d360-66eb-11e1-8e72-a8904824019b",
            "Date": "Wed, 2 Dec 2026 10:00:00 +0000", "TextBody": "", "HtmlBody": "",
            "Headers": [{"Name": "Return-Path", "Value": "<ann@example.com>"}],
            "Attachments": []}
    auth = "Basic " + base64.b64encode(b"hook:secret").decode()
    return client.post("/anymail/postmark/inbound/", json.dumps(body),
                       content_type="application/json", HTTP_AUTHORIZATION=auth)


def test_a_reply_to_the_mailto_link_unsubscribes_through_the_inbound_webhook(
    outbox: list[EmailMessage], settings: Any, client: Any,
) -> None:
    settings.NOTIFY_DELIVERABILITY = {**settings.NOTIFY_DELIVERABILITY,
                                      "UNSUBSCRIBE_MAILTO": "unsub@example.org"}
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": "hook:secret"}
    notify(event="marketing.newsletter", to="ann@example.com", data=NEWS)
    drain_lane("bulk", budget=5.0)
    [sent] = outbox
    subject = links(sent)[1].split("subject=", 1)[1]

    assert inbound(client, "Re: something else").status_code == 200
    altered = subject[:-3] + ("AAA" if not subject.endswith("AAA") else "BBB")
    assert inbound(client, altered).status_code == 200  # ignored: the ESP must not retry it
    assert not Suppression.objects.exists()

    assert inbound(client, subject).status_code == 200

    row = Suppression.objects.get()
    assert (row.email, row.scope, row.reason) == ("ann@example.com", "newsletter",
                                                  SuppressionReason.UNSUBSCRIBE)
    assert notify(event="marketing.newsletter", to="ann@example.com", data=NEWS).status \
        == "suppressed"


def test_a_transactional_email_carries_no_unsubscribe_header_or_link(
    outbox: list[EmailMessage],
) -> None:
    notify(event="order.placed", to="ann@example.com", data=ORDER)
    notify(event="password.reset", to="ann@example.com", data={"reset_url": "https://x.io/r"})

    drain_lane("transactional", budget=5.0)

    assert len(outbox) == 2
    for sent in outbox:
        headers = sent_headers(sent)
        assert headers["List-Unsubscribe"] is None and headers["List-Unsubscribe-Post"] is None
        assert "/u/" not in sent.body and "/u/" not in sent.alternatives[0][0]


def test_an_exempt_event_type_on_the_bulk_lane_offers_no_unsubscribe(
    outbox: list[EmailMessage],
) -> None:
    """The suppression rule ignores unsubscribes for an exempt event type: a header or footer
    link would say "Unsubscribed" while the mail kept coming."""
    news = EventType.objects.get(key="marketing.newsletter")
    news.unsubscribe_exempt = True
    news.save()  # as the admin does: the lookups cache forgets the event type
    notify(event="marketing.newsletter", to="ann@example.com", data=NEWS)

    drain_lane("bulk", budget=5.0)

    [sent] = outbox
    headers = sent_headers(sent)
    assert headers["List-Unsubscribe"] is None and headers["List-Unsubscribe-Post"] is None
    html = sent.alternatives[0][0]
    assert "/u/" not in html and "Unsubscribe" not in html and "/u/" not in sent.body
    assert sent.subject == "June news" and "Things happened." in html  # still mailed


def test_the_newsletter_footer_links_to_the_same_page_as_the_header(
    outbox: list[EmailMessage],
) -> None:
    notify(event="marketing.newsletter", to="ann@example.com", data=NEWS)

    drain_lane("bulk", budget=5.0)

    [sent] = outbox
    [url] = links(sent)
    html = sent.alternatives[0][0]
    assert f'href="{url}"' in html and "Unsubscribe or choose what you get" in html
    assert url in sent.body  # the text part, derived from the HTML


def test_the_link_names_the_category_the_suppression_rule_compares(
    outbox: list[EmailMessage],
) -> None:
    """An event type without a category unsubscribes from its key (its unsubscribe_category)."""
    EventType.objects.filter(key="marketing.newsletter").update(category="")
    notify(event="marketing.newsletter", to="ann@example.com", data=NEWS)

    drain_lane("bulk", budget=5.0)

    [url] = links(outbox[0])
    assert read_token(token_in(url)) == ("ann@example.com", "marketing.newsletter")


def test_the_headers_cost_no_query_per_email(django_assert_num_queries: Any) -> None:
    first = notify(event="marketing.newsletter", to="ann@example.com", data=NEWS)
    second = notify(event="marketing.newsletter", to="bob@example.com", data=NEWS)
    unsubscribe.headers_for(first)  # the event type's category, once per process

    with django_assert_num_queries(0):
        headers = unsubscribe.headers_for(second)

    assert read_token(token_in(headers["List-Unsubscribe"][1:-1]))[0] == "bob@example.com"


# --- the demo -------------------------------------------------------------------------------------

def test_the_demo_exempts_receipts_and_resets_and_names_the_newsletter_category() -> None:
    kinds = {et.key: (et.unsubscribe_category, et.unsubscribe_exempt)
             for et in EventType.objects.all()}

    assert kinds["marketing.newsletter"] == ("newsletter", False)
    assert kinds["password.reset"][1] is True and kinds["order.placed"][1] is True
    assert seed_demo() == []  # a second run creates nothing


def test_the_demo_upgrades_an_older_seed_once_and_keeps_what_operators_changed() -> None:
    """A database seeded before categories and the footer: the newsletter's unchanged template
    gets the footer as a new version and the event types their categories, once."""
    news = EventType.objects.get(key="marketing.newsletter")
    TemplateVersion.objects.filter(template=news.template).update(html_body=NEWSLETTER_V1)
    EventType.objects.update(category="", unsubscribe_exempt=False)
    EventType.objects.filter(key="order.placed").update(category="shop")  # an operator's own

    first = seed_demo()
    second = seed_demo()

    assert first == ["version of template newsletter"] and second == []
    active = TemplateVersion.objects.get(template=news.template, is_active=True)
    assert "unsubscribe_url" in active.html_body
    assert TemplateVersion.objects.filter(template=news.template).count() == 2
    kinds = {et.key: (et.category, et.unsubscribe_exempt) for et in EventType.objects.all()}
    assert kinds["marketing.newsletter"] == ("newsletter", False)
    assert kinds["password.reset"] == ("account", True)
    assert kinds["order.placed"] == ("shop", False)


def test_the_demo_leaves_an_edited_newsletter_template_alone() -> None:
    template = Template.objects.get(key="newsletter")
    TemplateVersion.objects.filter(template=template).update(html_body="<p>Our own</p>")

    assert seed_demo() == []
    assert TemplateVersion.objects.get(template=template, is_active=True).html_body == (
        "<p>Our own</p>")


def test_previews_of_the_newsletter_render_without_a_dead_link() -> None:
    """Sample data has no unsubscribe_url: the footer is left out rather than linking nowhere."""
    version = TemplateVersion.objects.get(template__key="newsletter", is_active=True)
    assert "Unsubscribe" not in render_version(version, NEWS).html
    assert "Unsubscribe" in render_version(version, {**NEWS, "unsubscribe_url": "x"}).html
