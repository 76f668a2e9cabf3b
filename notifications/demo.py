"""Demo event types and templates: the four events the lab names, ready to send, each with
sample data that template previews and test sends render with."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import transaction

from notifications.models import EventType, Lane
from notifications.services import ensure_lanes
from templates_app.models import Template
from templates_app.services import template_create

STYLE = "<style>h1 { color: #1d4ed8; font-family: sans-serif; } p { font-size: 15px; }</style>"

DEMO: list[dict[str, Any]] = [
    {
        "event": "user.registered",
        "description": "A user signed up: welcome email.",
        "template": "welcome",
        "subject": "Welcome, {{ first_name|default:username }}!",
        "html": STYLE + "<h1>Welcome {{ first_name|default:username }}</h1>"
        "<p>Your account <b>{{ username }}</b> is ready.</p>",
        "lane": Lane.TRANSACTIONAL,
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
        "html": STYLE + "<h1>{{ headline }}</h1><p>{{ body }}</p>",
        "lane": Lane.BULK,
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
        _, made = EventType.objects.get_or_create(
            key=spec["event"],
            defaults={
                "description": spec["description"], "template": template, "lane": spec["lane"],
                "priority": spec["priority"], "max_attempts": spec["max_attempts"],
                "expiry": spec["expiry"], "data_schema": spec["schema"],
                "sample_data": spec["sample"],
            },
        )
        if made:
            created.append(f"event type {spec['event']}")
        else:
            # Seeded before sample data existed: fill it in, never overwrite an operator's own.
            EventType.objects.filter(key=spec["event"], sample_data={}).update(
                sample_data=spec["sample"])
    return created
