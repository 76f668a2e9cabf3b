from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from notifications.models import Status
from notifications.selectors import queue_stats


class Command(BaseCommand):
    help = "Print queue depth per lane and status, and the age of the oldest due message."

    def handle(self, *args: Any, **options: Any) -> None:
        statuses = [s.value for s in Status]
        header = f"{'lane':<15}" + "".join(f"{s:>12}" for s in statuses) + f"{'due':>8}  oldest due"
        self.stdout.write(header)
        for stats in queue_stats():
            age = stats.oldest_due_age
            age_text = f"{age.total_seconds():.1f}s" if age is not None else "-"
            row = f"{stats.lane:<15}" + "".join(
                f"{stats.by_status.get(s, 0):>12}" for s in statuses
            )
            self.stdout.write(f"{row}{stats.due:>8}  {age_text}")
