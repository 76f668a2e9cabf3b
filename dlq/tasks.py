"""django-q2 task entry points of the dead letter queue: they take ids and call the modules that
do the work."""

from __future__ import annotations

from dlq import alerts, operations


def operation_run(operation_id: int) -> None:
    operations.operation_run(operation_id)


def minute_check() -> None:
    """Every minute: alert on what needs an operator, and resume operations whose worker died."""
    alerts.alerts_check()
    operations.operations_resume_stale()
