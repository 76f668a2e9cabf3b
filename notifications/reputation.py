"""The reputation guard: rolling hard-bounce and complaint rates per lane (and per provider when
several are configured), and a bulk lane that pauses itself when they pass the thresholds.

Providers judge a sender by these two rates (SES reviews an account at 5% bounces and 0.1%
complaints), and one bad marketing list can get the account suspended, receipts and password
resets included. So when a lane's rates pass NOTIFY_DELIVERABILITY's BOUNCE_RATE or
COMPLAINT_RATE (fractions; 0 turns that check off) over at least MIN_VOLUME accepted emails:

- the bulk lane is paused through notifications.lanes.lane_pause (audited, as user
  GUARD_USER, the reason saying rate, threshold, window and volume); it never resumes itself:
  an operator fixes the cause and resumes it;
- the transactional lane is never paused (its mail is what the account is kept healthy for);
- dlq/alerts.py alerts operators once per breach (`reputation:<lane>[:<provider>]:<kind>`) and
  says "resolved" when it clears.

The window, per lane:

1. The last WINDOW_HOURS, but never before the lane's last resume (LaneState.resumed_at): after
   an operator resumes, only fresh evidence can pause it again. Bounce and complaint events are
   then counted only for emails sent since the resume; late bounces of the batch that caused
   the pause do not count against the next one.
2. While the lane is paused, the window ends at the pause (LaneState.paused_at): nothing is sent
   meanwhile, so a wall-clock window would slide past the evidence and report "resolved" while
   the lane stays stopped. Events that arrive during the pause still count.

Denominator: emails the provider accepted in the window, from the drains' rollup (LaneMinute,
minutes that start in it). Numerators: distinct messages with a hard bounce (soft ones are
temporary and do not count; a "rejected" event for a known-bad address is recorded as hard)
and with a complaint, from TrackingEvent (index tracking_lane_type_idx), received in the window.

Per provider (only when notifications.providers.configured() lists several; one provider's
rates are its lane's): numerators by the message's provider; the denominator counts
DeliveryAttempt rows sent through it (partial index attempt_sent_provider_idx), but only as far
as a decision needs (`_cap`): a provider's rate can pass a threshold only while its volume is
below numerator / threshold, so past that (and MIN_VOLUME) the exact count does not matter and
is not read. Such a row says `capped`: `sent` is a lower bound and its rates upper bounds, both
below the thresholds. The per-minute cost is then bounded by the numerators, not the volume.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from anymail.signals import EventType as AnymailEventType
from django.conf import settings
from django.db.models import Count, Q, Sum
from django.utils import timezone

from notifications.lanes import lane_pause
from notifications.models import (
    Bounce,
    DeliveryAttempt,
    Lane,
    LaneMinute,
    LaneState,
    Outcome,
    TrackingEvent,
)
from notifications.providers import configured
from notifications.rollup import minute_of
from notifications.selectors import capped_count

logger = logging.getLogger(__name__)

GUARD_USER = "reputation guard"
# The lanes the guard pauses; the others only alert.
PAUSES = (Lane.BULK.value,)

# Event types that can carry a hard bounce (bounced, or rejected for a known-bad address) or a
# complaint: listed so the query uses tracking_lane_type_idx and never walks deliveries or opens.
_COUNTED_TYPES = (AnymailEventType.BOUNCED, AnymailEventType.REJECTED,
                  AnymailEventType.COMPLAINED)

BOUNCES = "bounces"
COMPLAINTS = "complaints"


@dataclass(frozen=True)
class Rate:
    """One lane's (provider "") or one lane-and-provider's rates over its window."""

    lane: str
    provider: str
    sent: int
    hard_bounces: int
    complaints: int
    window_start: datetime
    window_end: datetime
    # True when `sent` was counted only up to what decides (a lower bound: see the module doc).
    capped: bool = False

    @property
    def bounce_rate(self) -> float:
        return self.hard_bounces / self.sent if self.sent else 0.0

    @property
    def complaint_rate(self) -> float:
        return self.complaints / self.sent if self.sent else 0.0


@dataclass(frozen=True)
class Breach:
    """A rate past its threshold with enough volume to judge."""

    rate: Rate
    kind: str  # BOUNCES or COMPLAINTS
    value: float
    threshold: float

    @property
    def key(self) -> str:
        """The alert's key (dlq.models.AlertState): one alert per lane, provider and kind."""
        where = f"{self.rate.lane}:{self.rate.provider}" if self.rate.provider else self.rate.lane
        return f"reputation:{where}:{self.kind}"

    @property
    def reason(self) -> str:
        """E.g. "bounce rate 5.2% > 4.0% over 24 h (1,234 sent)"."""
        name = "bounce rate" if self.kind == BOUNCES else "complaint rate"
        via = f" via {self.rate.provider}" if self.rate.provider else ""
        decimals = _decimals(self.threshold)
        span = _span(self.rate.window_end - self.rate.window_start)
        return (f"{name}{via} {self.value * 100:.{decimals}f}% > "
                f"{self.threshold * 100:.{decimals}f}% over {span} ({self.rate.sent:,} sent)")

    def alert(self, *, paused: bool) -> str:
        """The alert's text: what passed, and whether the lane is stopped."""
        if paused:
            tail = "the lane is paused; resume it once the cause is fixed"
        elif self.rate.lane in PAUSES:
            tail = "the lane is NOT paused"
        else:
            tail = f"the {self.rate.lane} lane is never paused: it keeps sending"
        return f"Lane {self.rate.lane}: {self.reason}; {tail}."


def _decimals(threshold: float) -> int:
    """Enough decimals to show the threshold as a percentage (4.0%, 0.08%), at most 4."""
    percent = threshold * 100
    for decimals in range(1, 4):
        if abs(round(percent, decimals) - percent) < 1e-9:
            return decimals
    return 4


def _span(span: timedelta) -> str:
    seconds = max(span.total_seconds(), 0)
    if seconds >= 3600:
        hours = seconds / 3600
        return f"{hours:.0f} h" if abs(hours - round(hours)) < 0.05 else f"{hours:.1f} h"
    return f"{max(round(seconds / 60), 1)} min"


def _window(state: LaneState | None, now: datetime, hours: int) -> tuple[datetime, datetime,
                                                                         bool]:
    """(start, end, fresh_only) of a lane's window: see the module doc. `fresh_only` when the
    last resume bounds it (events then count only for emails sent since)."""
    end = now
    if state is not None and state.paused and state.paused_at is not None:
        end = min(state.paused_at, now)
    start = end - timedelta(hours=hours)
    resumed = state.resumed_at if state is not None else None
    if resumed is not None and resumed > start:
        return min(resumed, end), end, True
    return start, end, False


def _cap(hard_bounces: int, complaints: int, conf: dict[str, Any]) -> int:
    """How far to count a provider's volume: past this many sends MIN_VOLUME is met and no
    enabled check can pass (count / sent > threshold needs sent < count / threshold), so
    counting further cannot change a decision."""
    cap = conf["MIN_VOLUME"]
    for count, threshold in ((hard_bounces, conf["BOUNCE_RATE"]),
                             (complaints, conf["COMPLAINT_RATE"])):
        if threshold > 0 and count:
            cap = max(cap, math.ceil(count / threshold))
    return cap


def rates(now: datetime | None = None) -> list[Rate]:
    """Every lane's rates (provider ""), then, with several providers configured, each lane's
    per provider. For the guard, the alerts and the dashboard."""
    now = now or timezone.now()
    conf = settings.NOTIFY_DELIVERABILITY
    states = {s.lane: s for s in LaneState.objects.all()}
    providers = [p.name for p in configured()]
    found: list[Rate] = []
    for lane in settings.LANES:
        start, end, fresh_only = _window(states.get(lane), now, conf["WINDOW_HOURS"])
        sent = LaneMinute.objects.filter(
            lane=lane, minute__gte=minute_of(start), minute__lte=end,
        ).aggregate(n=Sum("sent"))["n"] or 0
        events = TrackingEvent.objects.filter(
            lane=lane, event_type__in=_COUNTED_TYPES, received_at__gte=start,
            received_at__lte=now)
        if fresh_only:
            events = events.filter(message__sent_at__gte=start)
        counts: dict[str, tuple[int, int]] = defaultdict(lambda: (0, 0))
        tally = {"hard": Count("message_id", distinct=True, filter=Q(bounce=Bounce.HARD)),
                 "complaints": Count("message_id", distinct=True,
                                     filter=Q(event_type=AnymailEventType.COMPLAINED))}
        if len(providers) > 1:
            for row in events.values("message__provider").annotate(**tally).order_by():
                counts[row["message__provider"] or ""] = (row["hard"], row["complaints"])
        else:  # one provider: no join to the Message table
            total = events.aggregate(**tally)
            counts[""] = (total["hard"] or 0, total["complaints"] or 0)
        found.append(Rate(
            lane=lane, provider="", sent=sent,
            hard_bounces=sum(h for h, _ in counts.values()),
            complaints=sum(c for _, c in counts.values()), window_start=start, window_end=end))
        if len(providers) < 2:
            continue
        for provider in providers:
            hard, complaints = counts[provider]
            cap = _cap(hard, complaints, conf)
            attempts = DeliveryAttempt.objects.filter(
                provider=provider, outcome=Outcome.SENT, started_at__gte=start,
                started_at__lte=end, message__lane=lane)
            counted = capped_count(attempts, cap)
            found.append(Rate(
                lane=lane, provider=provider,
                sent=cap + 1 if counted is None else counted,
                hard_bounces=hard, complaints=complaints, window_start=start, window_end=end,
                capped=counted is None))
    return found


def breaches(found: list[Rate]) -> list[Breach]:
    """The rates past an enabled threshold (0 = off) with at least MIN_VOLUME sent."""
    conf = settings.NOTIFY_DELIVERABILITY
    out: list[Breach] = []
    for rate in found:
        if rate.sent < conf["MIN_VOLUME"]:
            continue
        if conf["BOUNCE_RATE"] > 0 and rate.bounce_rate > conf["BOUNCE_RATE"]:
            out.append(Breach(rate, BOUNCES, rate.bounce_rate, conf["BOUNCE_RATE"]))
        if conf["COMPLAINT_RATE"] > 0 and rate.complaint_rate > conf["COMPLAINT_RATE"]:
            out.append(Breach(rate, COMPLAINTS, rate.complaint_rate, conf["COMPLAINT_RATE"]))
    return out


def guard(now: datetime | None = None) -> list[str]:
    """Pause each lane in PAUSES whose rates (its own or one provider's) are past a threshold.
    Returns what it did, e.g. ["paused bulk: bounce rate 5.2% > 4.0% over 24 h (1,234 sent)"].

    Run every minute by dlq.tasks.minute_check, before the alert check (so the alert can say the
    lane is paused). A lane paused already stays as it is: lane_pause changes and audits nothing.
    """
    by_lane: dict[str, list[Breach]] = defaultdict(list)
    for breach in breaches(rates(now)):
        by_lane[breach.rate.lane].append(breach)
    done: list[str] = []
    for lane, found in by_lane.items():
        if lane not in PAUSES:
            continue  # alerted (dlq/alerts.py), never paused
        reason = "; ".join(b.reason for b in found)
        LaneState.objects.get_or_create(lane=lane)  # lane_pause changes only an existing row
        if lane_pause(lane=lane, user=GUARD_USER, reason=reason):
            logger.warning("reputation guard paused lane %s: %s", lane, reason)
            done.append(f"paused {lane}: {reason}")
    return done
