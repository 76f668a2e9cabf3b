"""Alerts: a check every minute (a django-q2 Schedule on the DLQ cluster) that tells operators
when something needs them, through the log, an email to NOTIFY_ALERT_EMAILS and an optional
webhook (NOTIFY_ALERT_WEBHOOK_URL, a JSON POST).

Conditions (thresholds in NOTIFY_ALERTS; 0 turns one off):
- `dlq_size`: more than DLQ_SIZE dead letters;
- `oldest_due:<lane>`: the lane's oldest due message has waited more than OLDEST_DUE_SECONDS (not
  while the lane is paused: an operator stopped it on purpose);
- `heartbeat:<lane>`: the lane's cluster has not run a task for HEARTBEAT_SECONDS;
- `reputation:<lane>:bounces|complaints` (one provider) or
  `reputation:<lane>:<provider>:bounces|complaints` (several: each judged alone, the lane's sum
  not, so one condition is one alert): a hard-bounce or complaint rate past
  NOTIFY_DELIVERABILITY's thresholds, from the rates the minute check stored just before
  (notifications/reputation.py, whose guard has paused the bulk lane by then: the text says
  whether the lane is paused). Stored rates, not computed here: the check reads what the guard
  acted on, and the rates' queries run once a minute whoever reads them.

Each condition alerts once when it starts (an AlertState row is created) and once more,
"resolved", when it clears (the row is deleted). The row's insert or delete is what decides, so
two checks running at once do not both notify.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Min
from django.utils import timezone

from dlq.models import AlertState
from notifications import reputation
from notifications.models import CLAIMABLE, LaneState, Message, Status

logger = logging.getLogger(__name__)
_CHECKER_STARTED = time.monotonic()  # when this process first imported the check

SCHEDULE_NAME = "dlq-minute-check"


@dataclass(frozen=True)
class Condition:
    key: str
    message: str


def _conf() -> dict[str, Any]:
    return settings.NOTIFY_ALERTS


def firing_conditions(now: datetime | None = None) -> list[Condition]:
    """The alert conditions that hold now."""
    now = now or timezone.now()
    conf = _conf()
    firing: list[Condition] = []
    if conf["DLQ_SIZE"]:
        # Bounded: past the threshold the exact size does not matter, and this stays cheap.
        size = Message.objects.filter(status=Status.DEAD)[:conf["DLQ_SIZE"] + 1].count()
        if size > conf["DLQ_SIZE"]:
            firing.append(Condition("dlq_size", f"The DLQ holds more than {conf['DLQ_SIZE']} "
                                                "dead letters."))
    states = {s.lane: s for s in LaneState.objects.all()}
    for lane in settings.LANES:
        state = states.get(lane)
        paused = bool(state and state.paused)
        if conf["OLDEST_DUE_SECONDS"] and not paused:
            oldest = Message.objects.filter(
                lane=lane, status__in=CLAIMABLE, next_attempt_at__lte=now,
            ).aggregate(due=Min("next_attempt_at"))["due"]
            if oldest is not None:
                age = (now - oldest).total_seconds()
                if age > conf["OLDEST_DUE_SECONDS"]:
                    firing.append(Condition(
                        f"oldest_due:{lane}",
                        f"Lane {lane}: the oldest due message has waited {age:.0f} s "
                        f"(threshold {conf['OLDEST_DUE_SECONDS']} s)."))
        if conf["HEARTBEAT_SECONDS"]:
            beat = state.heartbeat_at if state else None
            # "Never seen" only once the checker itself has run that long: on a fresh start the
            # first check can come before any cluster's first beat (an alert, then at once a
            # "resolved", on every new deployment).
            starting = time.monotonic() - _CHECKER_STARTED < conf["HEARTBEAT_SECONDS"]
            if (beat is None and not starting) or (
                    beat is not None and (now - beat).total_seconds() > conf["HEARTBEAT_SECONDS"]):
                seen = f"last seen {beat:%Y-%m-%d %H:%M:%S} UTC" if beat else "never seen"
                firing.append(Condition(
                    f"heartbeat:{lane}",
                    f"Lane {lane}: its cluster is not beating ({seen}; threshold "
                    f"{conf['HEARTBEAT_SECONDS']} s)."))
    for breach in reputation.breaches(reputation.rates_stored().rates):
        state = states.get(breach.rate.lane)
        firing.append(Condition(breach.key, breach.alert(paused=bool(state and state.paused))))
    return firing


def alerts_check(now: datetime | None = None) -> list[str]:
    """Notify new conditions and cleared ones. Returns what was sent, e.g. ["FIRING dlq_size"]."""
    now = now or timezone.now()
    firing = {c.key: c for c in firing_conditions(now)}
    sent: list[str] = []
    for key, condition in firing.items():
        try:
            with transaction.atomic():
                _, created = AlertState.objects.get_or_create(
                    key=key, defaults={"message": condition.message, "since": now})
        except IntegrityError:
            created = False  # another check created it first
        if created:
            notify(key=key, state="firing", message=condition.message, since=now)
            sent.append(f"FIRING {key}")
    for state in AlertState.objects.exclude(key__in=list(firing)):
        deleted, _ = AlertState.objects.filter(key=state.key).delete()
        if deleted:
            notify(key=state.key, state="resolved", message=f"Resolved: {state.message}",
                   since=state.since)
            sent.append(f"RESOLVED {state.key}")
    return sent


def notify(*, key: str, state: str, message: str, since: datetime) -> None:
    """Log, email and POST one alert. A failing channel is logged, never raised: the others
    still go out, and the check runs again in a minute."""
    conf = _conf()
    level = logging.WARNING if state == "firing" else logging.INFO
    logger.log(level, "alert %s %s: %s", state, key, message)
    subject = f"[notifications] {'ALERT' if state == 'firing' else 'RESOLVED'} {key}"
    if conf["EMAILS"]:
        try:
            send_mail(subject, f"{message}\n\nSince {since:%Y-%m-%d %H:%M:%S} UTC.",
                      settings.DEFAULT_FROM_EMAIL, list(conf["EMAILS"]))
        except Exception:
            logger.exception("could not email alert %s", key)
    if conf["WEBHOOK_URL"]:
        body = json.dumps({"alert": key, "state": state, "message": message,
                           "since": since.isoformat()}).encode()
        request = urllib.request.Request(
            conf["WEBHOOK_URL"], data=body, method="POST",
            headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=conf["WEBHOOK_TIMEOUT"]) as response:
                response.read(1024)
        except Exception:
            logger.exception("could not POST alert %s to the webhook", key)


def ensure_alert_schedule(**kwargs: Any) -> None:
    """The minute check's Schedule, on the DLQ cluster (created idempotently after migrate)."""
    from django_q.models import Schedule

    Schedule.objects.update_or_create(
        name=SCHEDULE_NAME,
        defaults={
            "func": "dlq.tasks.minute_check",
            "schedule_type": Schedule.MINUTES,
            "minutes": 1,
            "repeats": -1,
            "cluster": settings.NOTIFY_DLQ["CLUSTER"],
        },
    )
