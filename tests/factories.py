from __future__ import annotations

from typing import Any

import factory

from notifications.models import EventType, Lane
from templates_app.models import Template
from templates_app.services import template_create


class TemplateFactory(factory.django.DjangoModelFactory):
    """A template with one active English version (through the service, so it is compiled)."""

    class Meta:
        model = Template

    key = factory.Sequence(lambda n: f"template-{n}")
    description = "test template"

    @classmethod
    def _create(cls, model_class: type, *args: Any, **kwargs: Any) -> Template:
        return template_create(
            key=kwargs["key"],
            description=kwargs.get("description", ""),
            subject=kwargs.get("subject", "Hello {{ name }}"),
            html_body=kwargs.get("html_body", "<p>Hi <b>{{ name }}</b></p>"),
            text_body=kwargs.get("text_body", ""),
        )


class EventTypeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = EventType

    key = factory.Sequence(lambda n: f"test.event{n}")
    template = factory.SubFactory(TemplateFactory)
    lane = Lane.TRANSACTIONAL
    priority = 5
    max_attempts = 3
    expiry = None
    data_schema = None


def staff(name: str, group: str) -> Any:
    """A staff user in one of the console's groups ("operators" or "viewers", notifications/
    roles.py), with password "pw"."""
    from django.contrib.auth.models import Group, User

    user = User.objects.create_user(name, password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    return user
