"""GET /metrics: the platform's state and counters in the Prometheus text format.

Everything comes from the database (and the flow store for the breakers), read by one custom
collector at scrape time, so any web process on any host answers the same: nothing is counted in
a process's memory. Per scrape, a handful of cheap queries:

- queue gauges per lane: messages by unfinished status and in the DLQ (exact counts through the
  partial indexes that skip the sent history), due now, the oldest due message's age, paused;
- counters from MetricTotal (notifications/totals.py), added to by the drains and the sweeper in
  the transactions that record what they count: sent, failed by outcome, retried, dead by
  reason, suppressed by reason, and two histograms (one send's duration; enqueue to sent);
- each provider's breaker state and configured rate; each cluster's heartbeat.

Access: with NOTIFY_METRICS_TOKEN set, only `Authorization: Bearer <token>` opens it (401
otherwise), from anywhere; without a token, only clients in NOTIFY_METRICS_ALLOW (default:
loopback) that no proxy forwarded, others get 403.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime
from ipaddress import IPv6Address, ip_address

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from notifications import totals
from notifications.models import LaneState, MetricTotal

logger = logging.getLogger(__name__)

BREAKER_STATES = ("closed", "open", "half_open", "unknown")

# name in MetricTotal -> (metric name, help, label name or None)
COUNTERS = {
    "sent": ("notify_sent", "Messages the provider accepted.", None),
    "failed": ("notify_failed", "Send tries that did not send, by outcome.", "outcome"),
    "retried": ("notify_retried", "Messages scheduled for another try.", None),
    "dead": ("notify_dead", "Messages moved to the dead letter queue, by reason.", "reason"),
    "suppressed": ("notify_suppressed", "Messages stopped by the suppression list, by reason.",
                   "reason"),
}
HISTOGRAMS = {
    "send_ms": ("notify_send_duration_seconds", "One send to the provider, request to answer."),
    "queue_ms": ("notify_enqueue_to_sent_seconds",
                 "From the event's arrival to the provider accepting its email."),
}


class PlatformCollector:
    """The one collector /metrics serves (see the module docstring)."""

    def collect(self) -> Iterator[Metric]:
        started = time.monotonic()
        now = timezone.now()
        yield from self._queues(now)
        yield from self._totals()
        yield from self._providers()
        yield from self._clusters(now)
        took = GaugeMetricFamily("notify_metrics_scrape_seconds",
                                 "How long this scrape's queries took.")
        took.add_metric([], time.monotonic() - started)
        yield took

    def _queues(self, now: datetime) -> Iterator[Metric]:
        from notifications.selectors import EXACT_STATUSES, due_by_lane, exact_counts

        messages = GaugeMetricFamily(
            "notify_queue_messages", "Messages not finished (pending, retry, processing) or "
            "in the DLQ (dead), per lane.", labels=["lane", "status"])
        dlq = GaugeMetricFamily("notify_dlq_messages", "Dead letters waiting for an operator.",
                                labels=["lane"])
        due = GaugeMetricFamily("notify_queue_due_messages", "Messages due to be sent now.",
                                labels=["lane"])
        oldest = GaugeMetricFamily(
            "notify_queue_oldest_due_age_seconds",
            "How long the oldest due message has waited since it became due (0: none due).",
            labels=["lane"])
        paused = GaugeMetricFamily("notify_lane_paused", "1 while an operator or the "
                                   "reputation guard has paused the lane.", labels=["lane"])
        exact = exact_counts()
        due_now = due_by_lane(now)
        states = {s.lane: s.paused for s in LaneState.objects.only("lane", "paused")}
        for lane in settings.LANES:
            for status in EXACT_STATUSES:
                messages.add_metric([lane, status], exact[lane].get(status, 0))
            dlq.add_metric([lane], exact[lane].get("dead", 0))
            n, first = due_now.get(lane, (0, None))
            due.add_metric([lane], n)
            oldest.add_metric([lane], max(0.0, (now - first).total_seconds()) if first else 0.0)
            paused.add_metric([lane], 1 if states.get(lane) else 0)
        yield from (messages, dlq, due, oldest, paused)

    def _totals(self) -> Iterator[Metric]:
        rows = MetricTotal.objects.values_list("lane", "provider", "name", "label", "value")
        counters = {name: CounterMetricFamily(
            metric, doc, labels=["lane", "provider", label] if label else ["lane", "provider"])
            for name, (metric, doc, label) in COUNTERS.items()}
        buckets: dict[str, dict[tuple[str, str], dict[str, int]]] = {
            name: defaultdict(dict) for name in HISTOGRAMS}
        for lane, provider, name, label, value in rows:
            if name in counters:
                labels = [lane, provider, label] if COUNTERS[name][2] else [lane, provider]
                counters[name].add_metric(labels, value)
            elif name in buckets:
                buckets[name][(lane, provider)][label] = value
        yield from counters.values()
        for name, (metric, doc) in HISTOGRAMS.items():
            family = HistogramMetricFamily(metric, doc, labels=["lane", "provider"])
            for (lane, provider), counts in sorted(buckets[name].items()):
                cumulative, running = [], 0
                for bound in totals.HISTOGRAMS[name]:
                    running += counts.get(str(bound), 0)
                    cumulative.append((str(bound / 1000), running))
                cumulative.append(("+Inf", running + counts.get(totals.INF, 0)))
                family.add_metric([lane, provider], cumulative,
                                  sum_value=counts.get(totals.SUM, 0) / 1000)
            yield family

    def _providers(self) -> Iterator[Metric]:
        from notifications.dashboard import provider_rows

        state = GaugeMetricFamily(
            "notify_provider_breaker_state", "1 for the provider's current circuit breaker "
            "state (closed, open, half_open; unknown when its store cannot be read).",
            labels=["provider", "state"])
        holding = GaugeMetricFamily(
            "notify_provider_hold_seconds", "Seconds left of a throttling hold (429).",
            labels=["provider"])
        rate = GaugeMetricFamily(
            "notify_provider_rate_limit_per_second",
            "The configured shared send rate (0: unlimited).", labels=["provider"])
        for row in provider_rows():
            for name in BREAKER_STATES:
                state.add_metric([row.name, name], 1 if row.state == name else 0)
            holding.add_metric([row.name], row.hold_for)
            rate.add_metric([row.name], row.rate_per_second or 0)
        yield from (state, holding, rate)

    def _clusters(self, now: datetime) -> Iterator[Metric]:
        from notifications.dashboard import cluster_states

        labels = ["cluster", "lane", "source"]
        up = GaugeMetricFamily("notify_cluster_up", "1 while the cluster beats.", labels=labels)
        seen = GaugeMetricFamily(
            "notify_cluster_last_seen_timestamp_seconds",
            "Unix time of the cluster's last heartbeat (absent if never seen, or stopped on "
            "purpose).", labels=labels)
        workers = GaugeMetricFamily("notify_cluster_workers", "The cluster's live worker "
                                    "processes (configured, for a lane's own heartbeat).",
                                    labels=labels)
        for cluster in cluster_states(now=now):
            values = [cluster.name, cluster.lane or cluster.name, cluster.source]
            up.add_metric(values, 1 if cluster.up else 0)
            if cluster.last_seen is not None and not cluster.stopped:
                seen.add_metric(values, cluster.last_seen.timestamp())
            if cluster.workers is not None:
                workers.add_metric(values, cluster.workers)
        yield from (up, seen, workers)


REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(PlatformCollector())


def _allowed(request: HttpRequest) -> int:
    """200 if this request may read the metrics, else the status to refuse it with.

    With a token configured, only the token opens it: behind a reverse proxy on the same host
    every request comes from 127.0.0.1, so the address says nothing. Without one, the client
    address must be in ALLOW, and a request a proxy forwarded (X-Forwarded-For, Forwarded) is
    refused: its REMOTE_ADDR is the proxy's."""
    conf = settings.NOTIFY_METRICS
    if conf["TOKEN"]:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
                given.strip().encode(), conf["TOKEN"].encode()):
            return 200
        return 401
    if "X-Forwarded-For" in request.headers or "Forwarded" in request.headers:
        return 403
    try:
        client = ip_address(request.META.get("REMOTE_ADDR", "").split("%")[0])
    except ValueError:
        return 403
    if isinstance(client, IPv6Address) and client.ipv4_mapped is not None:
        client = client.ipv4_mapped  # ::ffff:10.0.0.1 from a dual-stack socket is 10.0.0.1
    return 200 if any(client in network for network in conf["ALLOW"]) else 403


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    status = _allowed(request)
    if status != 200:
        response = HttpResponse(
            "Bearer token required.\n" if status == 401 else
            "Metrics are readable from NOTIFY_METRICS_ALLOW or with NOTIFY_METRICS_TOKEN.\n",
            status=status, content_type="text/plain; charset=utf-8")
        if status == 401:
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    try:
        body = generate_latest(REGISTRY)
    except DatabaseError:
        logger.exception("the metrics could not be read")
        return HttpResponse("The database is unavailable.\n", status=503,
                            content_type="text/plain; charset=utf-8")
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
