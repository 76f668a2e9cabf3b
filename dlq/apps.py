from django.apps import AppConfig
from django.db.models.signals import post_migrate


class DlqConfig(AppConfig):
    name = "dlq"
    verbose_name = "Dead letter queue"

    def ready(self) -> None:
        from dlq.alerts import ensure_alert_schedule

        post_migrate.connect(ensure_alert_schedule, sender=self, dispatch_uid="dlq-alerts")
