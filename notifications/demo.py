"""Demo event types and templates: the four events the lab names, ready to send, each with
sample data that template previews and test sends render with, and what a recipient may
unsubscribe from (the newsletter; not password resets, receipts or the welcome email).

seed_demo() runs on every `make run`: it creates what is missing and fills in what an older
seed left out, never replacing what an operator changed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import transaction

from notifications.models import EventType, Lane
from notifications.services import ensure_lanes
from templates_app.models import Template
from templates_app.services import template_create, template_version_create

STYLE = "<style>h1 { color: #1d4ed8; font-family: sans-serif; } p { font-size: 15px; }</style>"

# The newsletter as seeded before it had an unsubscribe footer: a database still showing exactly
# this gets the footer as a new version; one an operator edited is left alone.
NEWSLETTER_V1 = STYLE + "<h1>{{ headline }}</h1><p>{{ body }}</p>"
# `unsubscribe_url` is in the context of bulk messages only (notifications/content.py); the
# `if` keeps previews and test sends, which render sample data, free of a dead link.
UNSUBSCRIBE_FOOTER = (
    '{% if unsubscribe_url %}<p style="font-size: 12px; color: #6b7280;">You get this because '
    'you subscribed to our newsletter. <a href="{{ unsubscribe_url }}">Unsubscribe or choose '
    "what you get</a>.</p>{% endif %}")

DEMO: list[dict[str, Any]] = [
    {
        "event": "user.registered",
        "description": "A user signed up: welcome email.",
        "template": "welcome",
        "subject": "Welcome, {{ first_name|default:username }}!",
        "html": STYLE + "<h1>Welcome {{ first_name|default:username }}</h1>"
        "<p>Your account <b>{{ username }}</b> is ready.</p>",
        "lane": Lane.TRANSACTIONAL,
        "category": "account",
        "unsubscribe_exempt": True,  # sent once, in answer to the recipient's own sign-up
        "priority": 3,
        "max_attempts": 6,
        "expiry": None,
        "sample": {"username": "ada.lovelace", "first_name": "Ada"},
        "schema": {
            "type": "object",
            "required": ["username"],
            "properties": {"username": {"type": "string"}, "first_name": {"type": "string"}},
        },
    },
    {
        "event": "order.placed",
        "description": "An order was placed: order confirmation.",
        "template": "order-confirmation",
        "subject": "Order {{ order_id }} confirmed",
        "html": STYLE + "<h1>Thanks for your order</h1><p>Order <b>{{ order_id }}</b>: "
        "{{ items|length }} item{{ items|length|pluralize }}, total {{ total }}.</p>"
        "<ul>{% for item in items %}<li>{{ item.qty }} × {{ item.name }}</li>{% endfor %}</ul>",
        "lane": Lane.TRANSACTIONAL,
        "category": "orders",
        "unsubscribe_exempt": True,  # a receipt
        "priority": 2,
        "max_attempts": 8,
        "expiry": timedelta(days=1),
        "sample": {
            "order_id": "A-10472",
            "total": "€42.50",
            "items": [{"name": "Notebook", "qty": 2}, {"name": "Fountain pen", "qty": 1}],
        },
        "schema": {
            "type": "object",
            "required": ["order_id", "total", "items"],
            "properties": {
                "order_id": {"type": ["string", "integer"]},
                "total": {"type": "string"},
                "items": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "qty"],
                        "properties": {
                            "name": {"type": "string"},
                            "qty": {"type": "integer", "minimum": 1},
                        },
                    },
                },
            },
        },
    },
    {
        "event": "password.reset",
        "description": "Password reset link: top priority, useless after an hour.",
        "template": "password-reset",
        "subject": "Reset your password",
        "html": STYLE + "<h1>Reset your password</h1><p><a href=\"{{ reset_url }}\">Choose a new "
        "password</a>. This link expires in one hour.</p>",
        "lane": Lane.TRANSACTIONAL,
        "category": "account",
        "unsubscribe_exempt": True,
        "priority": 0,
        "max_attempts": 5,
        "expiry": timedelta(hours=1),
        "sample": {"reset_url": "https://example.com/reset/3f9c2a7e"},
        "schema": {
            "type": "object",
            "required": ["reset_url"],
            "properties": {"reset_url": {"type": "string", "format": "uri"}},
        },
    },
    {
        "event": "marketing.newsletter",
        "description": "Newsletter: bulk lane, lowest priority.",
        "template": "newsletter",
        "subject": "{{ headline }}",
        "html": NEWSLETTER_V1 + UNSUBSCRIBE_FOOTER,
        "replaces": [NEWSLETTER_V1],
        "lane": Lane.BULK,
        "category": "newsletter",
        "unsubscribe_exempt": False,
        "priority": 9,
        "max_attempts": 3,
        "expiry": timedelta(days=2),
        "sample": {
            "headline": "What's new this month",
            "body": "Faster delivery, a new dashboard, and fewer emails you did not ask for.",
        },
        "schema": {
            "type": "object",
            "required": ["headline", "body"],
            "properties": {"headline": {"type": "string"}, "body": {"type": "string"}},
        },
    },
]


@transaction.atomic
def seed_demo() -> list[str]:
    """Create the demo event types and templates that are missing. Returns what was created."""
    ensure_lanes()
    created = []
    for spec in DEMO:
        template = Template.objects.filter(key=spec["template"]).first()
        if template is None:
            template = template_create(
                key=spec["template"], description=spec["description"],
                subject=spec["subject"], html_body=spec["html"],
            )
            created.append(f"template {template.key}")
        elif _upgrade_template(template, spec):
            created.append(f"version of template {template.key}")
        _, made = EventType.objects.get_or_create(
            key=spec["event"],
            defaults={
                "description": spec["description"], "template": template, "lane": spec["lane"],
                "priority": spec["priority"], "max_attempts": spec["max_attempts"],
                "expiry": spec["expiry"], "data_schema": spec["schema"],
                "sample_data": spec["sample"], "category": spec["category"],
                "unsubscribe_exempt": spec["unsubscribe_exempt"],
            },
        )
        if made:
            created.append(f"event type {spec['event']}")
        else:
            # Seeded before sample data existed: fill it in, never overwrite an operator's own.
            EventType.objects.filter(key=spec["event"], sample_data={}).update(
                sample_data=spec["sample"])
            # Seeded before categories existed (both still the model's defaults): fill them in.
            EventType.objects.filter(
                key=spec["event"], category="", unsubscribe_exempt=False,
            ).update(category=spec["category"], unsubscribe_exempt=spec["unsubscribe_exempt"])
    return created


def _upgrade_template(template: Template, spec: dict[str, Any]) -> bool:
    """Give `template` the spec's current source as a new active version when its active one is
    still an older demo source (`replaces`), as an earlier seed left it. Returns whether it did."""
    active = template.versions.filter(locale="en", is_active=True).first()
    if active is None or active.html_body not in spec.get("replaces", ()):
        return False
    template_version_create(template=template, locale="en", subject=active.subject,
                            html_body=spec["html"], text_body=active.text_body)
    return True
