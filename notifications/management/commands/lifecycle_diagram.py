from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from notifications.transitions import mermaid_diagram


class Command(BaseCommand):
    help = "Print the message lifecycle as a Mermaid state diagram, generated from TRANSITIONS."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(mermaid_diagram())
