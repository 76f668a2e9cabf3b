"""django-q2 task entry points of the dead letter queue: they take ids and call the modules that
do the work."""

from __future__ import annotations

from dlq import alerts, operations
from notifications.tracking import tracking_catch_up


def operation_run(operation_id: int) -> None:
    operations.operation_run(operation_id)


def minute_check() -> None:
    """Every minute: alert on what needs an operator, resume operations whose worker died, and
    apply tracking events that came before their message was matched or recorded as sent."""
    alerts.alerts_check()
    operations.operations_resume_stale()
    tracking_catch_up()
