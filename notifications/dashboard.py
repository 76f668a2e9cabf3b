"""The operator dashboard's figures in one snapshot: lanes (notifications.selectors), django-q2
clusters, providers (notifications.flow), and the per-minute chart as server-rendered SVG.

The page renders a snapshot and its inline script refreshes the same snapshot as JSON
(`snapshot_json`), so the numbers a test reads from the JSON are the numbers the page shows.

Deliverability: what the ESPs' tracking webhooks said in the last day (delivered, bounced,
complained), counted through tracking_lane_type_idx, and the events no message matched (through
the small unapplied index), capped like the lanes' history counts. The reputation rates are the
ones the minute check stored (notifications.reputation.rates_stored), shown with their age: a
refresh never computes them.

Clusters, with any broker: per lane, whether it is served (its heartbeat, LaneState.heartbeat_at,
written by every drain and every sweep, at least every NOTIFY_SWEEP_MINUTES; what the alert and
readiness check use), then each qcluster process serving it, from its workers' own beats
(notifications/clusters.py): up while a worker beat within three beats, with its live worker
count. django-q2's own status (`Stat`) is added when the broker keeps it where this process can
see it, in Redis (REDIS_URL set); with the ORM broker it lives in each cluster's process-local
cache. Each row says which source it comes from.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from notifications.clusters import ClusterView, cluster_views
from notifications.flow import provider_states
from notifications.models import TrackingEvent
from notifications.providers import configured
from notifications.reputation import BOUNCES, COMPLAINTS, Rate, breaches, rates_stored
from notifications.selectors import (
    CHART_MINUTES,
    LaneDashboard,
    Tally,
    heartbeats,
    lanes_dashboard,
    tally,
)

logger = logging.getLogger(__name__)

HEARTBEAT = "heartbeat"
BEATS = "worker beats"
QSTAT = "django-q2 Stat"


@dataclass(frozen=True)
class ClusterState:
    name: str
    up: bool
    workers: int | None  # live workers (Stat: its pool); None when nothing says
    last_seen: datetime | None
    source: str  # HEARTBEAT (a lane), BEATS (a qcluster process) or QSTAT
    detail: str = ""
    lane: str = ""
    configured_workers: int | None = None
    stopped: bool = False  # BEATS: every worker exited cleanly

    @property
    def state(self) -> str:
        return "up" if self.up else "stopped" if self.stopped else "down"


@dataclass(frozen=True)
class ProviderState:
    name: str
    state: str  # closed, open, half_open
    open_for: float
    hold_for: float
    trips: int
    failing: int
    rate_per_second: float | None  # the configured send rate; None = unlimited


@dataclass(frozen=True)
class Deliverability:
    """Tracking events received in the last DELIVERABILITY_HOURS, over every lane."""

    delivered: Tally
    bounced: Tally
    complained: Tally
    unknown: Tally  # no message matched (yet): kept, retried by tracking_catch_up
    # The reputation guard's view (notifications/reputation.py): per lane, and per provider
    # when several are configured, with the thresholds it pauses the bulk lane at, as the
    # minute check last computed them (at `rates_at`; None: not yet).
    rates: list[RateRow]
    rates_at: datetime | None
    bounce_threshold: float
    complaint_threshold: float
    min_volume: int

    # Seconds between `rates_at` and the snapshot (the age the page shows).
    rates_age_seconds: float | None = None

    @property
    def bounce_threshold_percent(self) -> float:
        return self.bounce_threshold * 100

    @property
    def complaint_threshold_percent(self) -> float:
        return self.complaint_threshold * 100


@dataclass(frozen=True)
class RateRow:
    """One reputation rate as the dashboard shows it: percentages, and whether each is past
    its threshold with enough volume (what the guard pauses the bulk lane for)."""

    rate: Rate
    bounce_percent: float
    complaint_percent: float
    bounce_over: bool
    complaint_over: bool


def _rate_rows(found: list[Rate]) -> list[RateRow]:
    over = {(b.rate.lane, b.rate.provider, b.kind) for b in breaches(found)}
    return [RateRow(r, r.bounce_rate * 100, r.complaint_rate * 100,
                    (r.lane, r.provider, BOUNCES) in over, (r.lane, r.provider, COMPLAINTS) in over)
            for r in found]


DELIVERABILITY_HOURS = 24


@dataclass(frozen=True)
class Snapshot:
    at: datetime
    lanes: list[LaneDashboard]
    clusters: list[ClusterState]
    providers: list[ProviderState]
    deliverability: Deliverability


def heartbeat_max_age() -> timedelta:
    """A lane is down when none of its clusters ran a drain or a sweep for this long (3 missed
    sweeps)."""
    return timedelta(minutes=settings.NOTIFY["SWEEP_MINUTES"] * 3)


def cluster_states(*, now: datetime) -> list[ClusterState]:
    """Per lane its heartbeat row, then its clusters; then clusters of other names, then Stat."""
    beats = heartbeats()
    max_age = heartbeat_max_age()
    views = cluster_views(now=now)
    clusters = []
    for lane in settings.LANES:
        beat = beats.get(lane)
        mine = [v for v in views if v.cluster == lane]
        up = [v for v in mine if v.up]
        clusters.append(ClusterState(
            name=lane, lane=lane, up=beat is not None and now - beat <= max_age,
            # No cluster of this lane has ever beaten (started before the beats existed, or
            # never): how many workers serve it is unknown, not zero.
            workers=sum(v.live_workers for v in up) if mine else None,
            last_seen=beat, source=HEARTBEAT,
            detail=f"last drain or sweep; {len(up)} of {len(mine)} cluster(s) up"))
        clusters.extend(_beat_state(v) for v in mine)
    clusters.extend(_beat_state(v) for v in views if v.cluster not in settings.LANES)
    clusters.extend(_qstats())
    return clusters


def _beat_state(view: ClusterView) -> ClusterState:
    if view.up:
        detail = f"started {view.started_at:%Y-%m-%d %H:%M:%S} UTC"
    elif view.stopped:
        detail = "stopped cleanly"
    else:
        detail = "not beating: killed, hung or its host is down"
    return ClusterState(
        name=f"{view.cluster} on {view.host} (pid {view.pid})", lane=view.cluster, up=view.up,
        workers=view.live_workers, configured_workers=view.workers, last_seen=view.last_seen,
        source=BEATS, detail=detail, stopped=view.stopped)


def _qstats() -> list[ClusterState]:
    if not getattr(settings, "REDIS_URL", ""):
        return []  # the ORM broker keeps Stat in each cluster's own memory (see above)
    try:
        from django_q.conf import Conf
        from django_q.humanhash import humanize
        from django_q.status import Stat

        stats = Stat.get_all()
    except Exception:  # the dashboard must render while Redis is down
        logger.warning("could not read django-q2 cluster status", exc_info=True)
        return []
    return [
        ClusterState(
            name=humanize(stat.cluster_id.hex), up=stat.status not in (Conf.STOPPED,),
            workers=len(stat.workers), last_seen=stat.timestamp, source=QSTAT,
            detail=f"{stat.status} on {stat.host} (pid {stat.pid})")
        for stat in stats
    ]


def provider_rows() -> list[ProviderState]:
    rate = settings.NOTIFY["PROVIDER_RATE_PER_SECOND"] or None
    names = [p.name for p in configured()]
    try:
        views = provider_states(names)
    except Exception:  # the store (Redis) is down: show the providers without their state
        logger.warning("could not read the providers' flow state", exc_info=True)
        return [ProviderState(n, "unknown", 0.0, 0.0, 0, 0, rate) for n in names]
    return [ProviderState(name, v.state, v.open_for, v.hold_for, v.trips, v.failing, rate)
            for name, v in views.items()]


def deliverability(*, now: datetime) -> Deliverability:
    conf = settings.NOTIFY_DELIVERABILITY
    since = now - timedelta(hours=DELIVERABILITY_HOURS)
    recent = TrackingEvent.objects.filter(lane__in=list(settings.LANES), received_at__gte=since)
    # An unmatched event is never applied (tracking.record_event), so the partial index of
    # unapplied events holds them all: a few rows, not the day's traffic.
    unknown = TrackingEvent.objects.filter(applied=False, message__isnull=True,
                                           received_at__gte=since)
    stored = rates_stored()
    age = (now - stored.computed_at).total_seconds() if stored.computed_at else None
    return Deliverability(delivered=tally(recent.filter(event_type="delivered")),
                          bounced=tally(recent.filter(event_type="bounced")),
                          complained=tally(recent.filter(event_type="complained")),
                          unknown=tally(unknown), rates=_rate_rows(stored.rates),
                          rates_at=stored.computed_at,
                          rates_age_seconds=None if age is None else round(max(age, 0.0), 1),
                          bounce_threshold=conf["BOUNCE_RATE"],
                          complaint_threshold=conf["COMPLAINT_RATE"],
                          min_volume=conf["MIN_VOLUME"])


def snapshot() -> Snapshot:
    now = timezone.now()
    return Snapshot(at=now, lanes=lanes_dashboard(now=now), clusters=cluster_states(now=now),
                    providers=provider_rows(), deliverability=deliverability(now=now))


# --- the chart ------------------------------------------------------------------------------------

CHART_WIDTH = 590  # x of minute i is i * CHART_STEP
CHART_STEP = CHART_WIDTH // (CHART_MINUTES - 1)
CHART_HEIGHT = 100


def chart_points(values: list[int], top: int) -> str:
    """SVG polyline points: minute i at x = i * CHART_STEP, a value v at y = H - v * H / top."""
    return " ".join(f"{i * CHART_STEP},{round(CHART_HEIGHT - v * CHART_HEIGHT / top, 1):g}"
                    for i, v in enumerate(values))


def chart_svg(lane: LaneDashboard) -> SafeString:
    """Sent (green) and failed (retried or dead, red) per minute over the last hour."""
    sent = [m.sent for m in lane.minutes]
    failed = [m.failed + m.dead for m in lane.minutes]
    top = max(1, *sent, *failed)
    grid = format_html_join(
        "", '<line x1="0" y1="{}" x2="{}" y2="{}" class="grid"/>',
        ((y, CHART_WIDTH, y) for y in (0, CHART_HEIGHT // 2, CHART_HEIGHT)))
    return format_html(
        '<svg xmlns="http://www.w3.org/2000/svg" class="lane-chart" role="img" '
        'viewBox="-40 -10 {w} {h}" width="{w}" height="{h}" data-lane="{lane}" data-top="{top}">'
        "<title>{lane}: sent and failed per minute, last {n} minutes</title>{grid}"
        '<text x="-6" y="4" text-anchor="end">{top}</text>'
        '<text x="-6" y="{base}" text-anchor="end">0</text>'
        '<text x="0" y="{label_y}">-{n} min</text>'
        '<text x="{x_end}" y="{label_y}" text-anchor="end">now</text>'
        '<polyline class="sent" fill="none" stroke="#2e7d32" stroke-width="2" points="{sent}"/>'
        '<polyline class="failed" fill="none" stroke="#c62828" stroke-width="2" '
        'points="{failed}"/></svg>',
        w=CHART_WIDTH + 50, h=CHART_HEIGHT + 35, lane=lane.lane, top=top, n=CHART_MINUTES,
        grid=grid, base=CHART_HEIGHT + 4, label_y=CHART_HEIGHT + 18, x_end=CHART_WIDTH,
        sent=chart_points(sent, top), failed=chart_points(failed, top))


# --- JSON -----------------------------------------------------------------------------------------

def _seconds(delta: timedelta | None) -> float | None:
    return round(delta.total_seconds(), 1) if delta is not None else None


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def snapshot_json(snap: Snapshot) -> dict[str, Any]:
    """The snapshot as the page's script and tests read it (charts as ready SVG markup)."""
    return {
        "at": _iso(snap.at),
        "lanes": {
            lane.lane: {
                "by_status": {s: t.as_json() for s, t in lane.by_status.items()},
                "depth": lane.depth,
                "due": lane.due,
                "oldest_due_age_seconds": _seconds(lane.oldest_due_age),
                "sent_last_hour": lane.sent_last_hour,
                "failed_last_hour": lane.failed_last_hour,
                "dead_last_hour": lane.dead_last_hour,
                "dead_last_day": lane.dead_last_day,
                "failure_rate": lane.failure_rate,
                "dlq": lane.by_status["dead"].value,
                "paused": lane.paused,
                "paused_by": lane.paused_by,
                "pause_reason": lane.pause_reason,
                "paused_at": _iso(lane.paused_at),
                "chart": str(chart_svg(lane)),
            }
            for lane in snap.lanes
        },
        "clusters": [
            {"name": c.name, "lane": c.lane, "up": c.up, "state": c.state,
             "workers": c.workers, "configured_workers": c.configured_workers,
             "last_seen": _iso(c.last_seen),
             "last_seen_age_seconds": _seconds(snap.at - c.last_seen) if c.last_seen else None,
             "source": c.source, "detail": c.detail}
            for c in snap.clusters
        ],
        "deliverability": {
            **{name: getattr(snap.deliverability, name).as_json()
               for name in ("delivered", "bounced", "complained", "unknown")},
            "rates_at": _iso(snap.deliverability.rates_at),
            "rates_age_seconds": snap.deliverability.rates_age_seconds,
            "rates": [
                {"lane": row.rate.lane, "provider": row.rate.provider, "sent": row.rate.sent,
                 "hard_bounces": row.rate.hard_bounces,
                 "complaints": row.rate.complaints, "bounce_rate": row.rate.bounce_rate,
                 "complaint_rate": row.rate.complaint_rate, "bounce_over": row.bounce_over,
                 "complaint_over": row.complaint_over,
                 "window_start": _iso(row.rate.window_start)}
                for row in snap.deliverability.rates
            ],
        },
        "providers": [
            {"name": p.name, "state": p.state, "open_for": round(p.open_for, 1),
             "hold_for": round(p.hold_for, 1), "trips": p.trips, "failing": p.failing,
             "rate_per_second": p.rate_per_second}
            for p in snap.providers
        ],
    }
