from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.text import slugify

from notifications.producers import UnknownEventTypes, api_key_create, producer_get_or_create


class Command(BaseCommand):
    help = (
        "Create an API key for a producer (created if needed). The token is printed alone on the "
        "last line; it is not stored and cannot be shown again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="Producer name, e.g. order-service")
        parser.add_argument(
            "--events", default=None,
            help="Comma-separated event types it may send (replaces the current list)",
        )
        parser.add_argument("--key-name", default="", help="A label for this key")

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["name"]
        if not name or slugify(name) != name:
            raise CommandError(f"producer name {name!r} must be a slug such as 'order-service'")
        events = None
        if options["events"] is not None:
            events = [e.strip() for e in options["events"].split(",") if e.strip()]
            if not events:
                raise CommandError("--events is empty")
        try:
            producer = producer_get_or_create(name=name, events=events)
        except UnknownEventTypes as exc:
            raise CommandError(str(exc)) from exc
        key, token = api_key_create(producer=producer, name=options["key_name"])
        allowed = ", ".join(producer.allowed_event_types.values_list("key", flat=True)) or "none"
        self.stdout.write(f"producer {producer.name}: key {key.prefix} created; events: {allowed}")
        self.stdout.write("store this token now, it is not shown again:")
        self.stdout.write(token)
