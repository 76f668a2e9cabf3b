"""Proof under faults: the fault plan and the audit that `make chaos` (bench/chaos.py) and the
small run inside `make test` (tests/e2e/test_chaos_e2e.py) share.

The plan: real qcluster processes send through Anymail's Postmark backend to the fake Postmark
(tests/fakes/postmark.py) answering with a seeded mix of faults (FAULTS), recipients in
PERMANENT_DOMAIN always refused (422), and worker processes killed with SIGKILL mid-send.

The audit (`audit()`) reads every Message, every DeliveryAttempt and the provider's request log
(`GET /_fake/log`, one entry per message received) and checks, per message:

* it is `sent` or `dead`; `dead` only with reason `permanent_error` (exactly the recipients in
  the permanent domain, refused on their last try) or `max_attempts` (every attempt failed);
* each counted attempt has one DeliveryAttempt row (numbers 1..attempts), a `sent` message has
  exactly one `sent` row, its last;
* attempt rows and provider requests pair up in time order, each outcome agreeing with what the
  provider answered (`sent`: the provider took it; `transient`: the HTTP status it answered;
  `permanent`: 422; `unknown`: no answer in time, so it may have been taken). A request with no
  row is allowed only for a claim whose lease expired after a kill (at most one per expiry);
* every request carries the message's stable Message-ID;
* the provider took a `sent` message once, and a message more than once only through an
  accepted-then-timeout request (an `unknown` row whose request the provider completed) or a
  request lost to a kill; those lost requests never exceed what the killed workers could have
  had unrecorded (NOTIFY_SEND_CONCURRENCY + a quarter of it per drain,
  notifications/delivery.py).
"""

from __future__ import annotations

import math
import os
import random
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

FAULTS: dict[str, float] = {"503": 0.20, "429:1": 0.05, "hang:3": 0.05, "reset": 0.02,
                            "slow:0.5": 0.10}
PERMANENT_DOMAIN = "invalid.example"
TOKEN = "chaos-server-token"
POSTMARK = "anymail.backends.postmark.EmailBackend"
SEND_TIMEOUT = 1.5  # the client gives up on hang:3, waits for slow:0.5
# Short retries and timeouts that pass notifications/checks.py: budget 4.5 + send 1.5 = 6 <= 80%
# of Q_TIMEOUT 8 (E001); lease 9 > 8 (E002); Q_RETRY 40 > 8 (E003).
CHAOS_ENV: dict[str, str] = {
    "NOTIFY_RETRY_BASE_SECONDS": "0.2",
    "NOTIFY_RETRY_CAP_SECONDS": "1",
    "NOTIFY_BREAKER_PAUSE_SECONDS": "1",
    "NOTIFY_DRAIN_BUDGET_SECONDS": "4.5",
    "Q_TIMEOUT": "8",
    "NOTIFY_LEASE_SECONDS": "9",
    "Q_RETRY": "40",
    "EMAIL_TIMEOUT": str(SEND_TIMEOUT),
    "ANYMAIL_REQUESTS_TIMEOUT": str(SEND_TIMEOUT),
    "NOTIFY_SEND_CONCURRENCY": "16",
    "NOTIFY_BATCH_SIZE": "50",
    "Q_POLL": "0.05",
    "LOG_LEVEL": "WARNING",
}
FINAL = ("sent", "dead")
NEWSLETTER = {"headline": "Proof under faults", "body": "Every message sent or dead, once."}
ORDER = {"order_id": 42, "total": "$19.90", "items": [{"name": "Tea", "qty": 2}]}


def faults_arg(mix: dict[str, float] = FAULTS) -> str:
    """FAULTS as the fake's --faults option."""
    return ",".join(f"{mode}={share}" for mode, share in mix.items())


def postmark_env(url: str, *, token: str = TOKEN, **extra: str) -> dict[str, str]:
    """A cluster's environment: the Postmark backend pointed at the fake, the chaos timeouts."""
    return {**CHAOS_ENV, "EMAIL_BACKEND": POSTMARK, "ANYMAIL_POSTMARK_SERVER_TOKEN": token,
            "ANYMAIL_POSTMARK_API_URL": url, **extra}


def unrecorded_bound(concurrency: int) -> int:
    """The most sends one killed drain can leave unrecorded: those in flight plus fewer than a
    quarter of the concurrency finished and not written yet (notifications/delivery.py)."""
    return concurrency + max(1, concurrency // 4)


def chaos_events(n: int, *, seed: int = 1, bulk_share: float = 0.7,
                 permanent_share: float = 0.02) -> list[dict[str, Any]]:
    """n events for notify_many: newsletters (bulk lane) and order confirmations
    (transactional), one recipient each; round(n * permanent_share) of them (at least one) in
    the permanent domain."""
    rng = random.Random(seed)
    permanent = set(rng.sample(range(n), max(1, round(n * permanent_share))))
    events = []
    for i in range(n):
        domain = PERMANENT_DOMAIN if i in permanent else "example.com"
        bulk = rng.random() < bulk_share
        events.append({
            "event": "marketing.newsletter" if bulk else "order.placed",
            "to": {"email": f"chaos{i}@{domain}", "name": f"Reader {i}"},
            "data": {**NEWSLETTER} if bulk else {**ORDER, "order_id": i},
        })
    return events


def enqueue(events: list[dict[str, Any]], chunk: int = 1000) -> list[int]:
    """notify_many in chunks, as a producer would (each chunk wakes its lanes on commit)."""
    from notifications.services import notify_many

    pks: list[int] = []
    for start in range(0, len(events), chunk):
        for result in notify_many(events[start:start + chunk]):
            if isinstance(result, Exception):
                raise result
            pks.append(result.message.pk)
    return pks


# --- killing workers ------------------------------------------------------------------------------


@dataclass
class Kill:
    what: str
    pids: list[int]
    workers: int  # drains that may have died mid-send
    at: float  # time.time()
    connections: int  # connections to the provider the killed processes had open
    in_flight: int  # of those, how many had a request being handled by the provider

    def bound(self, concurrency: int) -> int:
        return self.workers * unrecorded_bound(concurrency)


def _provider_sockets(port: int) -> dict[str, int]:
    """inode -> local port of each established TCP connection to 127.0.0.1:`port` (this
    network namespace)."""
    sockets = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[2].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                sockets[fields[9]] = int(fields[1].rsplit(":", 1)[1], 16)
    return sockets


def provider_connections(root_pid: int, port: int) -> dict[int, set[int]]:
    """Processes under `root_pid` (a qcluster) with connections to the provider open, and the
    local port of each (a drain keeps its connections for its whole run)."""
    from bench import procstat

    sockets = _provider_sockets(port)
    found: dict[int, set[int]] = {}
    for pid in procstat.tree_pids(root_pid, procstat.all_stats()):
        if pid == root_pid:
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:[") and link[8:-1] in sockets:
                found.setdefault(pid, set()).add(sockets[link[8:-1]])
    return found


def kill_sending_worker(root_pid: int, port: int, what: str,
                        in_flight: Callable[[], Iterable[int]], *, timeout: float = 30) -> Kill:
    """SIGKILL the worker of cluster `root_pid` with the most requests being handled by the
    provider right now (`in_flight()`: the client ports the fake is answering), as soon as
    there is one: a worker killed mid-send, never one idling between batches."""
    deadline = time.monotonic() + timeout
    while True:
        busy = set(in_flight())
        sending = {pid: ports & busy for pid, ports in
                   provider_connections(root_pid, port).items()} if busy else {}
        sending = {pid: ports for pid, ports in sending.items() if ports}
        if sending:
            pid = max(sending, key=lambda p: len(sending[p]))
            os.kill(pid, signal.SIGKILL)
            connections = provider_connections(root_pid, port).get(pid, set())
            return Kill(f"{what} worker {pid}", [pid], 1, time.time(),
                        max(len(connections), len(sending[pid])), len(sending[pid]))
        if time.monotonic() > deadline:
            raise AssertionError(f"no worker of {what} was sending within {timeout}s")
        time.sleep(0.02)


def kill_cluster(root_pid: int, port: int, what: str, workers: int,
                 in_flight: Callable[[], Iterable[int]]) -> Kill:
    """SIGKILL every process of a cluster started in a session of its own."""
    from bench import procstat

    pids = procstat.tree_pids(root_pid, procstat.all_stats())
    busy = set(in_flight())
    ports = set().union(*provider_connections(root_pid, port).values())
    os.killpg(root_pid, signal.SIGKILL)
    return Kill(f"{what} (whole cluster)", pids, workers, time.time(), len(ports),
                len(ports & busy))


# --- waiting --------------------------------------------------------------------------------------


def not_final(pks: list[int]) -> int:
    from notifications.models import Message

    return Message.objects.filter(pk__gte=min(pks), pk__lte=max(pks)).exclude(
        status__in=FINAL).count()


def wait_settled(pks: list[int], timeout: float, tick: Callable[[int], None] | None = None,
                 poll: float = 0.5) -> tuple[float, int]:
    """Until every message is sent or dead, or `timeout` seconds. Calls tick(left) each poll.
    Returns (seconds waited, messages left)."""
    started = time.monotonic()
    while True:
        left = not_final(pks)
        if tick is not None:
            tick(left)
        if not left or time.monotonic() - started > timeout:
            return time.monotonic() - started, left
        time.sleep(poll)


def bring_sweeps_forward() -> int:
    """Make each lane's sweeper Schedule due now. A cluster's scheduler looks every 30 s and
    NOTIFY_SWEEP_MINUTES is at least 1: a short run need not wait a whole minute for the sweep
    that hands a killed worker's messages back. The real scheduler still runs the real sweep."""
    from django.utils import timezone
    from django_q.models import Schedule

    return Schedule.objects.filter(name__startswith="sweep-").update(next_run=timezone.now())


# --- the audit ------------------------------------------------------------------------------------


@dataclass
class Audit:
    figures: dict[str, Any]
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "figures": self.figures, "failures": self.failures}


TRIES = ("sent", "transient", "permanent", "unknown")  # attempt outcomes of a real try
# How far a provider's receipt time may fall outside its attempt's [start, start + duration]
# (the same clock: the fake and the workers run on this machine).
PAIR_TOLERANCE = 1.0
MAX_FAILURES_LISTED = 40


def _fault_modes(mix: dict[str, float]) -> set[str]:
    return {mode.partition(":")[0] for mode in mix}


def audit(pks: list[int], log: Iterable[dict[str, Any]], *, kills: list[Kill],
          concurrency: int, batch_size: int, faults: dict[str, float] = FAULTS,
          permanent_domain: str = PERMANENT_DOMAIN) -> Audit:
    """Check the run's messages, attempt rows and provider log against each other (module
    docstring). Returns the figures and every failed check."""
    from notifications.delivery import message_id_for
    from notifications.models import DeliveryAttempt, Message, Outcome

    failures: list[str] = []
    wanted = set(pks)
    lo, hi = min(pks), max(pks)
    messages = {m.pk: m for m in Message.objects.filter(pk__gte=lo, pk__lte=hi).only(
        "id", "lane", "status", "dead_reason", "attempts", "max_attempts", "to_email",
        "provider") if m.pk in wanted}
    rows: dict[int, list[Any]] = defaultdict(list)
    for row in DeliveryAttempt.objects.filter(message_id__gte=lo, message_id__lte=hi).only(
            "id", "message_id", "number", "outcome", "error_code", "started_at",
            "duration_ms", "provider").order_by("id"):
        if row.message_id in wanted:
            rows[row.message_id].append(row)
    requests: dict[int, list[dict[str, Any]]] = defaultdict(list)
    log = list(log)
    for entry in log:
        pk = int(entry["notification_id"]) if entry.get("notification_id") else None
        if pk not in wanted:
            failures.append(f"provider request {entry['seq']} for no message of this run: "
                            f"{entry}")
            continue
        requests[pk].append(entry)

    first_kill = min((k.at for k in kills), default=None)
    status: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    pairs_seen: Counter[str] = Counter()  # "mode -> outcome"
    dup_timeout = dup_kill = unrecorded = dead_but_delivered = dead_after_lease_expiry = 0
    max_delivered = 0
    retry_gaps: list[float] = []  # one try to the next, no lease expiry between
    for pk in pks:
        m = messages.get(pk)
        if m is None:
            failures.append(f"message {pk} is missing")
            continue
        mine, reqs = rows[pk], sorted(requests[pk], key=lambda e: e["seq"])
        permanent = m.to_email.rpartition("@")[2] == permanent_domain
        key = m.status if m.status != "dead" else f"dead {m.dead_reason}"
        status[key] += 1
        for row in mine:
            outcomes[row.outcome] += 1
        where = f"message {pk} ({m.lane}, {m.to_email}, {key}, {m.attempts} attempts)"

        # Final status and the reason for it.
        if m.status not in FINAL:
            failures.append(f"{where}: stuck")
        elif permanent:
            if (m.status, m.dead_reason) != ("dead", "permanent_error"):
                failures.append(f"{where}: a permanently invalid address must be dead "
                                "permanent_error")
            elif not mine or mine[-1].outcome != Outcome.PERMANENT:
                failures.append(f"{where}: its last attempt was not the permanent refusal")
        elif m.status == "dead":
            if m.dead_reason != "max_attempts":
                failures.append(f"{where}: dead for a reason the plan does not explain")
            elif m.attempts != m.max_attempts:
                failures.append(f"{where}: dead max_attempts with attempts left")
        counted = sorted(row.number for row in mine)
        if counted != list(range(1, m.attempts + 1)):
            failures.append(f"{where}: attempt rows numbered {counted}, not 1..{m.attempts}")
        sent_rows = [row for row in mine if row.outcome == Outcome.SENT]
        if m.status == "sent" and (len(sent_rows) != 1 or mine[-1] is not sent_rows[0]):
            failures.append(f"{where}: {len(sent_rows)} sent rows, the last row "
                            f"{mine[-1].outcome if mine else None}")
        if m.status == "dead" and sent_rows:
            failures.append(f"{where}: dead with a sent attempt")
        if m.status == "sent" and sent_rows and m.provider != sent_rows[0].provider:
            failures.append(f"{where}: sent through {sent_rows[0].provider!r}, the message "
                            f"says {m.provider!r}")
        # After an unknown outcome a message is pinned: only that provider may try it again.
        tries = [row for row in mine if row.outcome in TRIES]
        for earlier, later in zip(tries, tries[1:], strict=False):
            if earlier.outcome == Outcome.UNKNOWN and later.provider != earlier.provider:
                failures.append(f"{where}: tried on {later.provider!r} after an unknown "
                                f"outcome on {earlier.provider!r}")
        if any(not row.provider for row in tries):
            failures.append(f"{where}: a try that names no provider")

        # Every request carries the message's stable Message-ID.
        mid = message_id_for(pk)
        if any(e["message_id"] != mid for e in reqs):
            failures.append(f"{where}: a request without its Message-ID {mid}")

        # Pair attempt rows with provider requests, in time order.
        i = 0
        lost: list[dict[str, Any]] = []
        timeout_dups = 0
        previous: dict[str, Any] | None = None  # the last paired request, None after a loss
        for row in mine:
            start = row.started_at.timestamp()
            if row.outcome == Outcome.LEASE_EXPIRED:
                previous = None
                if first_kill is None or start < first_kill:
                    failures.append(f"{where}: a lease expired with no worker killed before "
                                    f"(attempt {row.number})")
                claim_lost = []
                while i < len(reqs) and reqs[i]["time"] < start:  # sent before the sweep
                    claim_lost.append(reqs[i])
                    i += 1
                if len(claim_lost) > 1:
                    failures.append(f"{where}: {len(claim_lost)} requests for one lost claim")
                lost += claim_lost
                continue
            if row.outcome == Outcome.EXPIRED or (
                    row.outcome == Outcome.TRANSIENT and row.error_code == "connect"):
                continue  # nothing reached the provider
            while i < len(reqs) and reqs[i]["time"] < start - PAIR_TOLERANCE:
                failures.append(f"{where}: request {reqs[i]['seq']} ({reqs[i]['mode']}) has no "
                                "attempt row and no lease expiry")
                i += 1
            end = start + row.duration_ms / 1000
            if i >= len(reqs) or reqs[i]["time"] > end + PAIR_TOLERANCE:
                failures.append(f"{where}: attempt {row.number} ({row.outcome}) has no request "
                                "at the provider")
                continue
            req = reqs[i]
            i += 1
            if previous is not None:
                retry_gaps.append(req["time"] - previous["time"])
            previous = req
            pairs_seen[f"{req['mode']} -> {row.outcome}"] += 1
            agrees = {
                Outcome.SENT: req["delivered"] and req["status"] == 200,
                Outcome.TRANSIENT: str(req["status"]) == row.error_code
                and req["status"] is not None and req["status"] != 422,
                Outcome.PERMANENT: req["status"] == 422,
                Outcome.UNKNOWN: True,  # no answer in time: the provider may have taken it
            }.get(row.outcome, False)
            if not agrees:
                failures.append(f"{where}: attempt {row.number} recorded {row.outcome} "
                                f"{row.error_code!r}, the provider answered {req['status']} "
                                f"({req['mode']})")
            if row.outcome == Outcome.UNKNOWN and req["delivered"]:
                timeout_dups += 1
        for req in reqs[i:]:
            failures.append(f"{where}: request {req['seq']} ({req['mode']}) has no attempt row "
                            "and no lease expiry after it")

        # Retry-After is honoured: the next try of a message answered 429:<s> comes s later.
        for before, after in zip(reqs, reqs[1:], strict=False):
            waited = after["time"] - before["time"]
            if before["mode"].startswith("429:"):
                asked = float(before["mode"].partition(":")[2])
                if waited < asked:
                    failures.append(f"{where}: tried again {waited:.2f}s after a 429 asking "
                                    f"for {asked:g}s")

        # What the provider took, and why more than once.
        delivered = sum(bool(e["delivered"]) for e in reqs)
        kill_dups = sum(bool(e["delivered"]) for e in lost)
        max_delivered = max(max_delivered, delivered)
        unrecorded += len(lost)
        dup_timeout += timeout_dups
        dup_kill += kill_dups
        dead_but_delivered += m.status == "dead" and delivered > 0
        dead_after_lease_expiry += m.dead_reason == "max_attempts" and any(
            row.outcome == Outcome.LEASE_EXPIRED for row in mine)
        if delivered != (m.status == "sent") + timeout_dups + kill_dups:
            failures.append(f"{where}: the provider took it {delivered} times: "
                            f"{timeout_dups} after a timeout, {kill_dups} lost to a kill")

    # Bounds over the whole run.
    bound = sum(k.bound(concurrency) for k in kills)
    if unrecorded > bound:
        failures.append(f"{unrecorded} requests lost to kills, above the bound {bound}")
    lease_expired = outcomes.get(Outcome.LEASE_EXPIRED, 0)
    held = sum(k.workers for k in kills) * 2 * batch_size  # a batch and its refill per drain
    if lease_expired > held:
        failures.append(f"{lease_expired} leases expired, more than the killed drains could "
                        f"hold ({held})")
    if any(k.in_flight for k in kills) and not lease_expired:
        failures.append("workers were killed mid-send but no lease expired: the kill missed")
    modes = Counter(e["mode"] for e in log)
    injected_timeouts = sum(1 for e in log if e["delivered"]
                            and e["mode"].startswith(("hang:", "slow:")))
    missing = _fault_modes(faults) - {mode.partition(":")[0] for mode in modes}
    if missing:
        failures.append(f"fault modes never injected: {sorted(missing)} (the mix did not apply)")
    if not status.get("dead permanent_error"):
        failures.append("no permanently invalid address was tried")

    figures = {
        "messages": len(pks),
        "lanes": dict(Counter(m.lane for m in messages.values())),
        "permanent_addresses": sum(m.to_email.endswith("@" + permanent_domain)
                                   for m in messages.values()),
        "statuses": dict(status),
        "stuck": sum(m.status not in FINAL for m in messages.values()),
        "provider_requests": len(log),
        "provider_modes": dict(modes),
        "provider_delivered": sum(bool(e["delivered"]) for e in log),
        "attempt_rows": dict(outcomes),
        "mode_to_outcome": dict(sorted(pairs_seen.items())),
        "kills": [asdict(k) for k in kills],
        "lease_expired": lease_expired,
        "requests_lost_to_kills": unrecorded,
        "lost_bound": bound,
        "delivered_hang_or_slow_requests": injected_timeouts,
        "duplicates_accepted_then_timeout": dup_timeout,
        "duplicates_lost_to_kills": dup_kill,
        "max_delivered_per_message": max_delivered,
        "longest_wait_between_tries_s": round(max(retry_gaps, default=0.0), 1),
        "waits_between_tries_over_10s": sum(gap > 10 for gap in retry_gaps),
        "dead_but_delivered": dead_but_delivered,
        "dead_max_attempts_with_a_lease_expiry": dead_after_lease_expiry,
    }
    if len(failures) > MAX_FAILURES_LISTED:
        more = len(failures) - MAX_FAILURES_LISTED
        failures = failures[:MAX_FAILURES_LISTED] + [f"... and {more} more"]
    return Audit(figures, failures)


def table(result: Audit, extra: dict[str, Any] | None = None) -> str:
    """The figures as a two-column Markdown table, then the verdict and any failures."""
    rows = {**(extra or {}), **result.figures}
    lines = ["| figure | value |", "|---|---|"]
    for name, value in rows.items():
        if name == "kills":
            value = "; ".join(f"{k['what']} ({k['in_flight']} requests in flight, "
                              f"{k['connections']} connections)" for k in value) or "none"
        elif isinstance(value, dict):
            value = ", ".join(f"{k}: {v}" for k, v in value.items()) or "-"
        elif isinstance(value, float):
            value = f"{value:.1f}" if not math.isnan(value) else "-"
        lines.append(f"| {name.replace('_', ' ')} | {value} |")
    lines.append("")
    lines.append("**PASS**: every check held" if result.ok else
                 f"**FAIL**: {len(result.failures)} checks failed")
    lines += [f"- {failure}" for failure in result.failures]
    return "\n".join(lines)
