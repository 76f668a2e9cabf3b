from django.apps import AppConfig
from django.db.models.signals import post_migrate


class NotificationsConfig(AppConfig):
    name = "notifications"
    verbose_name = "Notifications"

    def ready(self) -> None:
        import os
        import sys

        from anymail.signals import inbound as anymail_inbound
        from anymail.signals import tracking as anymail_tracking

        from notifications import checks, lookups, receivers, roles, schedules  # noqa: F401 (checks)
        from notifications.clusters import install as install_cluster_beats
        from notifications.priority import apply_lane_priority
        from notifications.tracking import on_tracking
        from notifications.unsubscribe import on_inbound

        lookups.connect()
        receivers.connect()
        anymail_tracking.connect(on_tracking, dispatch_uid="notifications-tracking")
        anymail_inbound.connect(on_inbound, dispatch_uid="notifications-unsubscribe-mailto")
        apply_lane_priority(sys.argv, os.environ)
        install_cluster_beats(sys.argv)
        post_migrate.connect(schedules.ensure_schedules, sender=self)
        post_migrate.connect(roles.sync_roles_after_migrate, dispatch_uid="notifications-roles")
