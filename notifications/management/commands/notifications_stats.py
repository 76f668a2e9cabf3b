from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from notifications.flow import provider_states
from notifications.models import Status
from notifications.providers import configured
from notifications.selectors import queue_stats


class Command(BaseCommand):
    help = ("Print queue depth per lane and status, the age of the oldest due message, and each "
            "provider's circuit breaker and 429 hold.")

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
        self.stdout.write("")
        self.stdout.write(f"{'provider':<15}{'breaker':>10}{'open for':>10}{'held for':>10}"
                          f"{'trips':>7}{'failing':>9}")
        names = [p.name for p in configured()]
        for name, view in provider_states(names).items():
            self.stdout.write(f"{name:<15}{view.state:>10}{view.open_for:>9.1f}s"
                              f"{view.hold_for:>9.1f}s{view.trips:>7}{view.failing:>9}")
