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
- dlq/alerts.py alerts operators once per breach (`Breach.key`) and says "resolved" when it
  clears.

What is judged (`breaches`): with one provider, each lane's rates (they are that provider's);
with several, each lane's rates per provider only. A provider judges the account it holds on the
mail sent through it, so that is the rate that gets an account suspended; the lane's sum over the
providers is shown on the dashboard but not judged, or one burst of bounces through one provider
would raise two alerts (`reputation:bulk:bounces` and `reputation:bulk:primary:bounces`) and two
pause reasons for one condition. (A lane whose sends are spread so thin that no provider reaches
MIN_VOLUME is then not judged: no provider has enough of its mail to judge it either.)

Computed once a minute: dlq.tasks.minute_check calls `rates_refresh`, which computes the rates,
stores them (ReputationRate rows: without Redis the Django cache is per process and would not
reach the web processes) and hands them to `guard`. The alerts and the dashboard read the stored
rows (`rates_stored`, with the time they were computed), so a dashboard refreshing every few
seconds in every open browser costs one small read, not the rates' queries.

The window, per lane:

1. The last WINDOW_HOURS, but never before the lane's last resume (LaneState.resumed_at): after
   an operator resumes, only fresh evidence can pause it again. Bounce and complaint events are
   then counted only for emails sent since the resume; late bounces of the batch that caused
   the pause do not count against the next one.
2. While the lane is paused, the window ends at the pause (LaneState.paused_at): nothing is sent
   meanwhile, so a wall-clock window would slide past the evidence and report "resolved" while
   the lane stays stopped. Events that arrive during the pause still count.

Denominator: emails the provider accepted in the window, from the drains' rollup (LaneMinute,
minutes that start in it), per provider from the rollup's provider column; the lane's is the sum
over its rows. Numerators: distinct messages with a hard bounce (soft ones are temporary and do
not count; a "rejected" event for a known-bad address is recorded as hard) and with a complaint,
from TrackingEvent (index tracking_lane_type_idx), received in the window, per provider by the
message's provider (Message.provider, set with the send the rollup counted).

Rollup rows from before migration 0015 have no provider (""). While such a row with sends is in
a lane's window, the per-provider window starts after its minute, like a resume (events only for
emails sent since): counted from the old rows, each provider's volume would miss its sends from
before the upgrade while its bounces would not, and the guard would pause on rates that are not
real. The lane's own rates use every row.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from anymail.signals import EventType as AnymailEventType
from django.conf import settings
from django.db import transaction
from django.db.models import Count, Max, Q, Sum
from django.utils import timezone

from notifications.lanes import lane_pause
from notifications.models import (
    Bounce,
    Lane,
    LaneMinute,
    LaneState,
    ReputationRate,
    TrackingEvent,
)
from notifications.providers import configured
from notifications.rollup import minute_of

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
        """The alert's key (dlq.models.AlertState): one per judged rate (see the module doc)
        and kind: `reputation:<lane>:<kind>` with one provider, `reputation:<lane>:<provider>:
        <kind>` with several."""
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


def _volume(lane: str, start: datetime, end: datetime) -> dict[str, int]:
    """Emails accepted in the window, per provider ("" for rows from before migration 0015),
    from the rollup: the minutes of one lane, through one_row_per_lane_minute_provider."""
    rows = (LaneMinute.objects.filter(lane=lane, minute__gte=minute_of(start), minute__lte=end)
            .values("provider").annotate(n=Sum("sent")).order_by())
    return {row["provider"]: row["n"] or 0 for row in rows}


def _counts(lane: str, start: datetime, now: datetime, fresh_only: bool, *,
            by_provider: bool) -> dict[str, tuple[int, int]]:
    """(hard bounces, complaints) in the window: distinct messages, per message provider when
    `by_provider` (else all under "": no join to the Message table)."""
    events = TrackingEvent.objects.filter(
        lane=lane, event_type__in=_COUNTED_TYPES, received_at__gte=start, received_at__lte=now)
    if fresh_only:
        events = events.filter(message__sent_at__gte=start)
    tally = {"hard": Count("message_id", distinct=True, filter=Q(bounce=Bounce.HARD)),
             "complaints": Count("message_id", distinct=True,
                                 filter=Q(event_type=AnymailEventType.COMPLAINED))}
    if not by_provider:
        total = events.aggregate(**tally)
        return {"": (total["hard"] or 0, total["complaints"] or 0)}
    counts: dict[str, tuple[int, int]] = defaultdict(lambda: (0, 0))
    rows: Any = events.values("message__provider").annotate(**tally).order_by()
    for row in rows:
        hard, complaints = counts[row["message__provider"] or ""]
        counts[row["message__provider"] or ""] = (hard + row["hard"],
                                                  complaints + row["complaints"])
    return counts


def _legacy_until(lane: str, start: datetime, end: datetime) -> datetime | None:
    """The end of the last minute in the window whose sends the rollup holds without their
    provider (written before migration 0015), or None."""
    last = LaneMinute.objects.filter(
        lane=lane, provider="", sent__gt=0, minute__gte=minute_of(start), minute__lte=end,
    ).aggregate(m=Max("minute"))["m"]
    return last + timedelta(minutes=1) if last is not None else None


def rates(now: datetime | None = None) -> list[Rate]:
    """Every lane's rates (provider ""), each followed, with several providers configured, by
    its rates per provider. Computed by `rates_refresh` once a minute; readers use
    `rates_stored`."""
    now = now or timezone.now()
    conf = settings.NOTIFY_DELIVERABILITY
    states = {s.lane: s for s in LaneState.objects.all()}
    providers = [p.name for p in configured()]
    several = len(providers) > 1
    found: list[Rate] = []
    for lane in settings.LANES:
        start, end, fresh_only = _window(states.get(lane), now, conf["WINDOW_HOURS"])
        volume = _volume(lane, start, end)
        counts = _counts(lane, start, now, fresh_only, by_provider=several)
        found.append(Rate(
            lane=lane, provider="", sent=sum(volume.values()),
            hard_bounces=sum(h for h, _ in counts.values()),
            complaints=sum(c for _, c in counts.values()), window_start=start, window_end=end))
        if not several:
            continue
        legacy = _legacy_until(lane, start, end)
        if legacy is not None:  # see the module doc
            start = min(max(start, legacy), end)
            volume = _volume(lane, start, end)
            counts = _counts(lane, start, now, True, by_provider=True)
        for provider in providers:
            hard, complaints = counts.get(provider, (0, 0))
            found.append(Rate(
                lane=lane, provider=provider, sent=volume.get(provider, 0), hard_bounces=hard,
                complaints=complaints, window_start=start, window_end=end))
    return found


def rates_refresh(now: datetime | None = None) -> list[Rate]:
    """Compute the rates and store them for the alerts and the dashboard; returns them. Run
    once a minute by dlq.tasks.minute_check.

    An upsert per (lane, provider), then the rows no longer computed (a provider taken out of
    EMAIL_BACKENDS) are deleted: two checks running at once each leave a complete set, never a
    unique violation."""
    now = now or timezone.now()
    found = rates(now)
    rows = [ReputationRate(lane=r.lane, provider=r.provider, sent=r.sent,
                           hard_bounces=r.hard_bounces, complaints=r.complaints,
                           window_start=r.window_start, window_end=r.window_end,
                           computed_at=now) for r in found]
    rows.sort(key=lambda row: (row.lane, row.provider))  # one lock order for every writer
    with transaction.atomic():
        ReputationRate.objects.bulk_create(
            rows, update_conflicts=True, unique_fields=["lane", "provider"],
            update_fields=["sent", "hard_bounces", "complaints", "window_start", "window_end",
                           "computed_at"])
        ReputationRate.objects.filter(computed_at__lt=now).delete()
    return found


@dataclass(frozen=True)
class Stored:
    """The rates as the minute check last stored them, and when it computed them (None: not
    yet, e.g. before the DLQ cluster's first minute check)."""

    rates: list[Rate]
    computed_at: datetime | None


def rates_stored() -> Stored:
    """The stored rates, in the order `rates` computes them (lanes as configured, each lane's
    own row first, then its providers in order of preference)."""
    lanes = {lane: i for i, lane in enumerate(settings.LANES)}
    providers = {p.name: i for i, p in enumerate(configured(), start=1)}
    rows = sorted(ReputationRate.objects.all(), key=lambda r: (
        lanes.get(r.lane, len(lanes)), 0 if not r.provider else
        providers.get(r.provider, len(providers) + 1), r.lane, r.provider))
    found = [Rate(lane=r.lane, provider=r.provider, sent=r.sent, hard_bounces=r.hard_bounces,
                  complaints=r.complaints, window_start=r.window_start,
                  window_end=r.window_end) for r in rows]
    return Stored(found, min((r.computed_at for r in rows), default=None))


def breaches(found: list[Rate]) -> list[Breach]:
    """The judged rates (see the module doc: with several providers the lane's own row is not)
    past an enabled threshold (0 = off) with at least MIN_VOLUME sent."""
    conf = settings.NOTIFY_DELIVERABILITY
    split = {rate.lane for rate in found if rate.provider}  # judged per provider
    out: list[Breach] = []
    for rate in found:
        if rate.sent < conf["MIN_VOLUME"] or (not rate.provider and rate.lane in split):
            continue
        if conf["BOUNCE_RATE"] > 0 and rate.bounce_rate > conf["BOUNCE_RATE"]:
            out.append(Breach(rate, BOUNCES, rate.bounce_rate, conf["BOUNCE_RATE"]))
        if conf["COMPLAINT_RATE"] > 0 and rate.complaint_rate > conf["COMPLAINT_RATE"]:
            out.append(Breach(rate, COMPLAINTS, rate.complaint_rate, conf["COMPLAINT_RATE"]))
    return out


def guard(now: datetime | None = None, *, found: list[Rate] | None = None) -> list[str]:
    """Pause each lane in PAUSES whose judged rates are past a threshold (`found`, else
    computed now). Returns what it did, e.g.
    ["paused bulk: bounce rate 5.2% > 4.0% over 24 h (1,234 sent)"].

    Run every minute by dlq.tasks.minute_check on the rates it has just stored, before the alert
    check (so the alert can say the lane is paused). A lane paused already stays as it is:
    lane_pause changes and audits nothing.
    """
    by_lane: dict[str, list[Breach]] = defaultdict(list)
    for breach in breaches(rates(now) if found is None else found):
        by_lane[breach.rate.lane].append(breach)
    done: list[str] = []
    for lane, breached in by_lane.items():
        if lane not in PAUSES:
            continue  # alerted (dlq/alerts.py), never paused
        reason = "; ".join(b.reason for b in breached)
        LaneState.objects.get_or_create(lane=lane)  # lane_pause changes only an existing row
        if lane_pause(lane=lane, user=GUARD_USER, reason=reason):
            logger.warning("reputation guard paused lane %s: %s", lane, reason)
            done.append(f"paused {lane}: {reason}")
    return done
