from django.apps import AppConfig
from django.db.models.signals import post_migrate


class NotificationsConfig(AppConfig):
    name = "notifications"
    verbose_name = "Notifications"

    def ready(self) -> None:
        from notifications import checks, lookups, receivers, schedules  # noqa: F401 (checks)

        lookups.connect()
        receivers.connect()
        post_migrate.connect(schedules.ensure_schedules, sender=self)
