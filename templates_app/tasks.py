"""django-q2 task entry points of templates_app. They take ids, load the rows, call a service."""

from __future__ import annotations

from typing import Any

from notifications.models import EventType
from templates_app.models import TemplateVersion
from templates_app.services import template_test_email_send


def send_test_email(version_id: int, to_email: str, event_type_id: int | None) -> dict[str, Any]:
    version = TemplateVersion.objects.select_related("template").get(pk=version_id)
    event_type = EventType.objects.filter(pk=event_type_id).first() if event_type_id else None
    return template_test_email_send(version=version, to_email=to_email, event_type=event_type)
