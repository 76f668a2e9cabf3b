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
    """Every minute: compute and store the reputation rates, pause the bulk lane if they are past
    the thresholds, alert on what needs an operator, resume operations whose worker died, and
    apply tracking events that came before their message was matched or recorded as sent.

    The rates are computed here only: the guard gets them, the alerts and the dashboard read the
    stored rows. The guard runs before the alerts so a reputation alert can say the lane is
    paused; a failure in either is logged and does not stop the alerts (which then report the
    rates stored last)."""
    try:
        reputation.guard(found=reputation.rates_refresh())
    except Exception:
        logger.exception("the reputation guard failed")
    alerts.alerts_check()
    operations.operations_resume_stale()
    tracking_catch_up()
