"""django-q2 task entry points of the dead letter queue: they take ids and call the modules that
do the work."""

from __future__ import annotations

import logging

from dlq import alerts, operations
from notifications import reputation
from notifications.tracking import tracking_catch_up

logger = logging.getLogger(__name__)


def operation_run(operation_id: int) -> None:
    operations.operation_run(operation_id)


def minute_check() -> None:
    """Every minute: pause the bulk lane if its bounce or complaint rates are past the
    thresholds, alert on what needs an operator, resume operations whose worker died, and apply
    tracking events that came before their message was matched or recorded as sent.

    The guard runs before the alerts so a reputation alert can say the lane is paused; a failure
    in it is logged and does not stop the alerts (which report the same breach)."""
    try:
        reputation.guard()
    except Exception:
        logger.exception("the reputation guard failed")
    alerts.alerts_check()
    operations.operations_resume_stale()
    tracking_catch_up()
