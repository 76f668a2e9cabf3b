"""python manage.py retention [--days N]: delete old finished messages now, until none is left."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from notifications.retention import retention_delete


class Command(BaseCommand):
    help = ("Delete sent, delivered, bounced, complained, cancelled and suppressed messages (and "
            "their attempts) older than NOTIFY_RETENTION_DAYS, in small batches. Dead letters "
            "are kept. The scheduled task does the same in the background.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, default=None,
                            help="keep this many days instead of NOTIFY_RETENTION_DAYS")
        parser.add_argument("--duty", type=float, default=1.0,
                            help="share of the time spent deleting (0.1: it sleeps nine times "
                                 "as long as each batch took); 1, the default, never sleeps")

    def handle(self, *args: Any, days: int | None = None, duty: float = 1.0,
               **options: Any) -> None:
        days = settings.NOTIFY["RETENTION_DAYS"] if days is None else days
        if days < 1:
            raise CommandError("--days must be at least 1 (NOTIFY_RETENTION_DAYS=0 keeps "
                               "everything; this command then has nothing to do).")
        if not 0.01 <= duty <= 1:
            raise CommandError("--duty must be between 0.01 and 1.")
        total = 0
        while True:
            report = retention_delete(days=days, budget=30.0, duty=duty)
            total += report.messages
            if report.messages:
                self.stdout.write(f"deleted {report.messages} messages, {report.attempts} "
                                  f"attempts, {report.tracking_events} tracking events")
            if not report.more:
                break
        self.stdout.write(self.style.SUCCESS(
            f"{total} messages older than {days} days deleted; dead letters kept."))
