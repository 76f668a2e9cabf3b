from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from notifications.exceptions import NotifyError
from notifications.services import notify


class Command(BaseCommand):
    help = "Queue one event, e.g. send_event order.placed ann@example.com --data '{...}'."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("event", help="Event type key, e.g. order.placed")
        parser.add_argument("to", help="Recipient email address")
        parser.add_argument("--data", default="{}", help="Event data as a JSON object")
        parser.add_argument("--locale", default=None)
        parser.add_argument("--idempotency-key", default=None)
        parser.add_argument("--producer", default=None, help="Producer name (default: internal)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            data = json.loads(options["data"])
        except json.JSONDecodeError as exc:
            raise CommandError(f"--data is not valid JSON: {exc}") from exc
        try:
            message = notify(
                event=options["event"], to=options["to"], data=data, locale=options["locale"],
                idempotency_key=options["idempotency_key"], producer=options["producer"],
            )
        except NotifyError as exc:
            raise CommandError(f"{exc.field}: {exc.message}") from exc
        self.stdout.write(
            f"queued message {message.pk} ({message.event_type.key}, lane {message.lane}, "
            f"status {message.status})"
        )
