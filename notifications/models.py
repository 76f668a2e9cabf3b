"""The Message row is the queue of record.

Every outbound email is one Message; every send try is one DeliveryAttempt. django-q2 tasks only
wake a lane up: if one is lost, the sweeper finds due rows and nothing is lost. Status changes go
through `notifications.transitions`, never through `save()`.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.db.models.functions import Upper


class Lane(models.TextChoices):
    TRANSACTIONAL = "transactional", "Transactional"
    BULK = "bulk", "Bulk"


class Status(models.TextChoices):
    PENDING = "pending", "Pending"
    PROCESSING = "processing", "Processing"
    RETRY = "retry", "Retry"
    SENT = "sent", "Sent"
    DEAD = "dead", "Dead (in the DLQ)"
    CANCELLED = "cancelled", "Cancelled"
    SUPPRESSED = "suppressed", "Suppressed (recipient on the suppression list)"
    # What the provider's tracking webhooks said after it accepted the email (tracking.py).
    DELIVERED = "delivered", "Delivered"
    BOUNCED = "bounced", "Bounced"
    COMPLAINED = "complained", "Complained (marked as spam)"


# Statuses a drain may claim (when due).
CLAIMABLE = (Status.PENDING, Status.RETRY)
# The provider accepted it: sent, and whatever its tracking webhooks said since.
ACCEPTED = (Status.SENT, Status.DELIVERED, Status.BOUNCED, Status.COMPLAINED)


class Bounce(models.TextChoices):
    HARD = "hard", "Hard (the address does not exist or refuses mail)"
    SOFT = "soft", "Soft (temporary: mailbox full, greylisted, too large)"


class Outcome(models.TextChoices):
    """What one send try came to: the ONE vocabulary of SendResult and DeliveryAttempt rows."""

    SENT = "sent", "Sent"
    TRANSIENT = "transient", "Transient error"
    PERMANENT = "permanent", "Permanent error"
    UNKNOWN = "unknown", "Unknown (may have been sent)"
    EXPIRED = "expired", "Expired before sending"
    LEASE_EXPIRED = "lease_expired", "Worker lost (lease expired)"


class DeadReason(models.TextChoices):
    """Why a message is in the DLQ (set only by transitions.kill)."""

    PERMANENT_ERROR = "permanent_error", "Permanent error"
    MAX_ATTEMPTS = "max_attempts", "Out of attempts"
    EXPIRED = "expired", "Expired"
    RENDER_FAILED = "render_failed", "Template did not render"


class Producer(models.Model):
    """Who asked for a message: an in-process app ("internal") or an API client."""

    name = models.SlugField(max_length=100, unique=True)
    is_active = models.BooleanField(default=True)
    allowed_event_types: models.ManyToManyField[EventType, Any] = models.ManyToManyField(
        "EventType", blank=True, related_name="producers",
        help_text="Event types this producer may send over the API.",
    )
    rate_limit_per_second = models.PositiveIntegerField(
        default=100, help_text="API requests per second; 0 means unlimited."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class ApiKey(models.Model):
    """A producer's API key. Only a hash is stored; the token is shown once, at creation."""

    producer = models.ForeignKey(Producer, on_delete=models.CASCADE, related_name="api_keys")
    prefix = models.CharField(max_length=16, unique=True, help_text="Visible part of the token.")
    key_hash = models.CharField(max_length=64)
    name = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.producer.name} {self.prefix}…"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class EventType(models.Model):
    key = models.CharField(
        max_length=100, unique=True, help_text="Dotted name such as order.placed."
    )
    description = models.CharField(max_length=300, blank=True)
    template = models.ForeignKey(
        "templates_app.Template", on_delete=models.PROTECT, related_name="event_types"
    )
    lane = models.CharField(max_length=20, choices=Lane.choices, default=Lane.TRANSACTIONAL)
    priority = models.PositiveSmallIntegerField(
        default=5, help_text="0 is sent first; 9 last. Within a lane, lower numbers go first."
    )
    max_attempts = models.PositiveSmallIntegerField(default=5)
    category = models.SlugField(
        max_length=100, blank=True,
        help_text="What recipients unsubscribe from (e.g. newsletter); empty: the event key.")
    unsubscribe_exempt = models.BooleanField(
        default=False,
        help_text="Sent even to recipients who unsubscribed (password resets, receipts). Never "
                  "exempt from hard bounces or complaints.")
    expiry = models.DurationField(
        null=True,
        blank=True,
        help_text="A message not sent this long after it was due goes to the DLQ (e.g. 1:00:00).",
    )
    sample_data = models.JSONField(
        default=dict, blank=True,
        help_text="Example event data: template previews and test sends render with it.")
    data_schema = models.JSONField(
        null=True, blank=True, help_text="Optional JSON Schema the event data must satisfy."
    )
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return self.key

    @property
    def unsubscribe_category(self) -> str:
        return self.category or self.key


class Message(models.Model):
    event_type = models.ForeignKey(EventType, on_delete=models.PROTECT, related_name="messages")
    producer = models.ForeignKey(Producer, on_delete=models.PROTECT, related_name="messages")
    # NULL (not "") when absent: NULLs are exempt from the per-producer unique constraint.
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    payload_hash = models.CharField(max_length=64, blank=True)

    to_email = models.EmailField(max_length=254)
    to_name = models.CharField(max_length=200, blank=True)
    locale = models.CharField(max_length=16, default="en")
    data = models.JSONField(default=dict, blank=True)

    # The version is pinned at enqueue time and rendered with `data` when the message is sent
    # (notifications/content.py): versions are immutable, so a template edit never changes a
    # queued email, and the row stays small.
    template_version = models.ForeignKey(
        "templates_app.TemplateVersion", on_delete=models.PROTECT, related_name="messages"
    )

    lane = models.CharField(max_length=20, choices=Lane.choices)
    priority = models.PositiveSmallIntegerField(default=5)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    max_attempts = models.PositiveSmallIntegerField(default=5)

    next_attempt_at = models.DateTimeField(help_text="When the message is next due.")
    expires_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    lease_token = models.UUIDField(null=True, blank=True)

    last_error = models.TextField(blank=True)
    dead_reason = models.CharField(max_length=40, blank=True, choices=DeadReason.choices)
    provider_message_id = models.CharField(max_length=200, blank=True)
    # The provider that sent it; while it is not sent, the one it is pinned to (its outcome there
    # was unknown, so no other provider may send it: notifications/providers.py). "" = any.
    provider = models.CharField(max_length=40, blank=True)
    # Set when it dies (dlq/signatures.py): what dead letters are grouped by in the console.
    failure_signature = models.CharField(max_length=64, blank=True)
    # Set by transitions.bounce: a soft bounce may still become hard, never the other way.
    # (A database default too: the console's benchmarks seed rows with plain SQL.)
    bounce = models.CharField(max_length=4, blank=True, choices=Bounce.choices, default="",
                              db_default="")
    # Set by transitions.suppress: the suppression-list entry that stopped it.
    suppressed_by = models.ForeignKey(
        "Suppression", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        permissions = [
            ("cancel_message", "Can cancel messages not sent yet"),
            ("pause_lane", "Can pause and resume a lane"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["producer", "idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False),
                name="unique_idempotency_key_per_producer",
            )
        ]
        indexes = [
            # The claim query: due rows of one lane, most urgent first. Partial, so sent rows
            # (the bulk of the table) never bloat it.
            models.Index(
                fields=["lane", "priority", "next_attempt_at"],
                condition=models.Q(status__in=["pending", "retry"]),
                name="message_due_idx",
            ),
            models.Index(
                fields=["lease_until"],
                condition=models.Q(status="processing"),
                name="message_lease_idx",
            ),
            models.Index(fields=["status", "lane"], name="message_status_lane_idx"),
            # The console's search by recipient (exact, or the start of an address: LIKE 'x%'
            # needs the pattern opclass on PostgreSQL; other databases ignore opclasses), and
            # the DLQ's "an equivalent message was already sent" check (to_email IN ...).
            models.Index(fields=["to_email"], name="message_to_email_idx",
                         opclasses=["varchar_pattern_ops"]),
            # The DLQ's grouped view: dead letters by failure signature, newest first.
            models.Index(
                fields=["failure_signature", "updated_at"],
                condition=models.Q(status="dead"),
                name="message_dead_signature_idx",
            ),
            # Tracking webhooks find their message by the ESP's id when no notification_id
            # metadata came back. SMTP stores none (it is our Message-ID), so the index is small.
            models.Index(
                fields=["provider_message_id"],
                condition=~models.Q(provider_message_id=""),
                name="message_provider_id_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.event_type_id} → {self.to_email} ({self.status})"


class DeliveryAttempt(models.Model):
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="delivery_attempts")
    number = models.PositiveSmallIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(default=0)
    outcome = models.CharField(max_length=20, choices=Outcome.choices)
    error_class = models.CharField(max_length=200, blank=True)
    error_code = models.CharField(max_length=40, blank=True)
    error_message = models.TextField(blank=True)
    provider_message_id = models.CharField(max_length=200, blank=True)
    provider = models.CharField(max_length=40, blank=True, help_text="Which provider it went to.")
    worker = models.CharField(max_length=100, blank=True, help_text="host:pid that sent it")

    class Meta:
        ordering = ["message", "number", "id"]

    def __str__(self) -> str:
        return f"attempt {self.number} of #{self.message_id}: {self.outcome}"


class LaneState(models.Model):
    """One row per lane: debounces wake-ups so a burst of notify() calls enqueues one task."""

    lane = models.CharField(max_length=20, choices=Lane.choices, primary_key=True)
    wake_pending = models.BooleanField(default=False)
    wake_requested_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="Last time this lane's cluster ran a task (readiness)."
    )
    # Set only by notifications.lanes (lane_pause / lane_resume), which audits each change.
    paused = models.BooleanField(default=False, help_text="Drains claim nothing while paused.")
    paused_at = models.DateTimeField(null=True, blank=True)
    paused_by = models.CharField(max_length=150, blank=True)
    pause_reason = models.CharField(max_length=500, blank=True)
    resumed_at = models.DateTimeField(
        null=True, blank=True,
        help_text="Last resume: the reputation guard judges only what was sent since.")

    def __str__(self) -> str:
        return self.lane


class ClusterWorker(models.Model):
    """One row per qcluster worker process, beaten by that process every
    NOTIFY_CLUSTER_BEAT_SECONDS (written only by notifications/clusters.py). The dashboard
    groups the rows by qcluster process (host, cluster_pid) into clusters, each with its lane
    and live worker count: django-q2's own Stat is out of the web process's sight with the ORM
    broker. Rows not beaten for a day are deleted by the writers."""

    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField(help_text="The worker process.")
    cluster_pid = models.PositiveIntegerField(help_text="Its qcluster process.")
    cluster = models.CharField(max_length=100, help_text="Q_CLUSTER_NAME: the lane it serves.")
    workers = models.PositiveSmallIntegerField(help_text="Workers its cluster is configured "
                                                         "with.")
    started_at = models.DateTimeField()
    beat_at = models.DateTimeField()
    stopped_at = models.DateTimeField(null=True, blank=True,
                                      help_text="It exited cleanly (a stop or a recycle).")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["host", "pid"],
                                               name="clusterworker_host_pid")]
        indexes = [models.Index(fields=["beat_at"], name="clusterworker_beat_idx")]

    def __str__(self) -> str:
        return f"{self.cluster} worker {self.host}:{self.pid}"


class LaneMinute(models.Model):
    """Per lane, minute and provider: how many sends the drains recorded, by outcome (a small
    rollup the dashboard charts and counts from, so it never counts the Message table, and the
    reputation guard's volume per provider, so it never counts the attempts). A lane's figures
    are the sum of its rows over the providers."""

    lane = models.CharField(max_length=20, choices=Lane.choices)
    minute = models.DateTimeField(help_text="Start of the minute (UTC).")
    provider = models.CharField(
        max_length=40, blank=True, default="", db_default="",
        help_text="Where the sends went; empty for outcomes with no provider (render failures, "
                  "expired leases, suppressions) and for rows written before migration 0015.")
    sent = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0, help_text="Transient or unknown: retried.")
    dead = models.PositiveIntegerField(default=0, help_text="Moved to the DLQ.")
    suppressed = models.PositiveIntegerField(default=0, db_default=0,
                                             help_text="Stopped by suppressions.")

    class Meta:
        ordering = ["-minute", "lane", "provider"]
        constraints = [
            # The rollup's upsert key (ON CONFLICT): lane and minute first, for the dashboard's
            # and the guard's scans of a lane's last minutes.
            models.UniqueConstraint(fields=["lane", "minute", "provider"],
                                    name="one_row_per_lane_minute_provider")]

    def __str__(self) -> str:
        via = f" via {self.provider}" if self.provider else ""
        return f"{self.lane} {self.minute:%H:%M}{via}"


class ReputationRate(models.Model):
    """The reputation guard's rates as the minute check last computed them
    (notifications/reputation.py): one row per lane (provider "") and, with several providers,
    per lane and provider. The alerts and the dashboard read these rows, so the rates are
    computed once a minute, not once per reader (the Django cache is per process without Redis,
    so it cannot hold them)."""

    lane = models.CharField(max_length=20)
    provider = models.CharField(max_length=40, blank=True, default="")
    sent = models.PositiveIntegerField(default=0)
    hard_bounces = models.PositiveIntegerField(default=0)
    complaints = models.PositiveIntegerField(default=0)
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    computed_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["lane", "provider"],
                                               name="one_reputation_rate")]

    def __str__(self) -> str:
        via = f" via {self.provider}" if self.provider else ""
        return f"{self.lane}{via}: {self.hard_bounces}/{self.complaints} of {self.sent}"


class ProviderRate(models.Model):
    """The shared send schedule of one provider (GCRA): when its next send may start.

    Written by notifications.ratelimit when REDIS_URL is not set (Redis holds it otherwise)."""

    provider = models.CharField(max_length=200, primary_key=True)
    tat = models.DateTimeField(help_text="Theoretical arrival time of the next send.")

    def __str__(self) -> str:
        return self.provider


class ProviderHealth(models.Model):
    """One provider's circuit breaker and throttle, shared by every worker and host.

    Written by notifications.flow when REDIS_URL is not set (Redis holds it otherwise). Times are
    seconds since the epoch on the store's clock (PostgreSQL's, or this host's on SQLite)."""

    provider = models.CharField(max_length=40, primary_key=True)
    ring = models.CharField(
        max_length=1000, blank=True,
        help_text="The last sends' outcomes, oldest first: 1 failed, 0 answered (a ring buffer).")
    opened_until = models.FloatField(default=0, help_text="Open until then; 0 = closed.")
    probe_until = models.FloatField(default=0, help_text="A half-open probe runs until then.")
    hold_until = models.FloatField(default=0, help_text="Throttled (429): no send before then.")
    trips = models.PositiveIntegerField(default=0, help_text="How often it has opened.")

    def __str__(self) -> str:
        return self.provider


class AuditAction(models.TextChoices):
    REQUEUE = "requeue", "Requeue"
    DISCARD = "discard", "Discard"
    CANCEL = "cancel", "Cancel"
    PAUSE = "pause", "Pause lane"
    RESUME = "resume", "Resume lane"
    TEMPLATE_ACTIVATE = "template_activate", "Activate template version"
    TEMPLATE_EDIT = "template_edit", "New template version"
    TEMPLATE_TEST_SEND = "template_test_send", "Template test send"
    OPERATION_CANCEL = "operation_cancel", "Cancel an operation"
    OPERATION_RETRY = "operation_retry", "Retry a failed operation"
    SUPPRESS = "suppress", "Add to the suppression list"
    UNSUPPRESS = "unsuppress", "Remove from the suppression list"
    SUPPRESS_IMPORT = "suppress_import", "Import suppressions"


class AuditEntryQuerySet(models.QuerySet["AuditEntry"]):
    def update(self, **kwargs: object) -> int:
        raise TypeError("the audit log is append-only")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise TypeError("the audit log is append-only")


class AuditEntry(models.Model):
    """Who did what to the queue, when, to what, and why. Append-only: written by
    notifications.audit.audit_record, never changed or deleted (the admin shows it read-only)."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+")
    username = models.CharField(max_length=150, blank=True, help_text="Kept if the user goes.")
    action = models.CharField(max_length=40, choices=AuditAction.choices)
    target = models.CharField(max_length=300, help_text="What it acted on.")
    filter = models.JSONField(default=dict, blank=True,
                              help_text="The filter, group or selection acted on.")
    count = models.PositiveIntegerField(default=0, help_text="How many messages it changed.")
    reason = models.TextField(blank=True)

    objects = AuditEntryQuerySet.as_manager()

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name = "audit log entry"
        verbose_name_plural = "audit log"

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.username or '-'} {self.action} {self.target}"

    def save(self, *args: object, **kwargs: object) -> None:
        if self.pk is not None:
            raise TypeError("the audit log is append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: object, **kwargs: object) -> tuple[int, dict[str, int]]:
        raise TypeError("the audit log is append-only")


class SuppressionReason(models.TextChoices):
    """Why an address is suppressed, strongest first (a stronger reason replaces a weaker one)."""

    COMPLAINT = "complaint", "Complaint (marked as spam)"
    HARD_BOUNCE = "hard_bounce", "Hard bounce"
    SOFT_BOUNCES = "soft_bounces", "Repeated soft bounces"
    MANUAL = "manual", "Added by an operator"
    UNSUBSCRIBE = "unsubscribe", "Unsubscribed"


class Suppression(models.Model):
    """One address that must not get mail of `scope` ("" = any mail). Written only by
    notifications.suppression; removing one deactivates it (the row stays as history)."""

    email = models.CharField(max_length=254, help_text="Lower-cased address.")
    scope = models.CharField(
        max_length=100, blank=True,
        help_text="The category it applies to (an unsubscribe); empty: every email.")
    reason = models.CharField(max_length=20, choices=SuppressionReason.choices)
    active = models.BooleanField(default=True)
    source = models.CharField(max_length=200, blank=True,
                              help_text="What added it: a webhook event, one-click, an operator.")
    note = models.TextField(blank=True)
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="+", help_text="The email whose event caused it.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        constraints = [
            models.UniqueConstraint(fields=["email", "scope"], name="one_suppression_per_scope")]
        indexes = [
            models.Index(fields=["email"], condition=models.Q(active=True),
                         name="suppression_active_idx"),
            # The admin's search by the start of an address (LIKE 'x%' needs the pattern opclass
            # on PostgreSQL unless the collation is C) and its newest-first list.
            models.Index(fields=["email"], name="suppression_email_prefix_idx",
                         opclasses=["varchar_pattern_ops"]),
            models.Index(fields=["updated_at", "id"], name="suppression_updated_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.email} ({self.scope or 'all mail'}: {self.reason})"


class TrackingEvent(models.Model):
    """One event an ESP's tracking webhook reported (through Anymail), stored once: a replay of
    the same event (same ESP, same `dedupe_key`) is ignored. `message` is empty while no message
    matches (kept and retried by notifications.tracking.tracking_catch_up, less often each time,
    until `catch_up_at` is cleared: applied, or given up)."""

    esp = models.CharField(max_length=40)
    dedupe_key = models.CharField(
        max_length=64, help_text="The ESP's event id, else a hash of message, type and time.")
    event_type = models.CharField(max_length=20, help_text="Anymail's normalized event type.")
    bounce = models.CharField(max_length=4, blank=True, choices=Bounce.choices)
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.CASCADE,
                                related_name="tracking_events")
    notification_id = models.CharField(max_length=40, blank=True,
                                       help_text="Our id, from the metadata the ESP sent back.")
    provider_message_id = models.CharField(max_length=200, blank=True)
    recipient = models.CharField(max_length=254, blank=True)
    occurred_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    reject_reason = models.CharField(max_length=40, blank=True)
    description = models.TextField(blank=True)
    mta_response = models.TextField(blank=True)
    lane = models.CharField(max_length=20, blank=True, help_text="The message's, once matched.")
    applied = models.BooleanField(default=False, help_text="Its effect on the message is done.")
    catch_up_tries = models.PositiveSmallIntegerField(
        default=0, help_text="How many times the catch-up tried to match or apply it.")
    catch_up_at = models.DateTimeField(
        null=True, blank=True,
        help_text="When the catch-up tries it next; empty once applied or given up.")
    raw = models.JSONField(default=dict, blank=True, help_text="The ESP's event as posted.")

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["esp", "dedupe_key"], name="one_tracking_event")]
        indexes = [
            models.Index(fields=["received_at"], condition=models.Q(applied=False),
                         name="tracking_unapplied_idx"),
            # tracking_catch_up's queue: only the rows still waiting, never the applied history.
            models.Index(fields=["catch_up_at", "id"],
                         condition=models.Q(catch_up_at__isnull=False),
                         name="tracking_catch_up_idx"),
            models.Index(fields=["lane", "event_type", "received_at"],
                         name="tracking_lane_type_idx"),
            # The admin's search (exact values only): by recipient (as the ESP spelled it, so
            # case-insensitively: recipient__iexact is UPPER(recipient) = UPPER(%s)), by the
            # ESP's message id, and by our notification id where no message matched (matched
            # ones are found by message_id).
            models.Index(Upper("recipient"), name="tracking_recipient_idx"),
            models.Index(fields=["provider_message_id"],
                         condition=~models.Q(provider_message_id=""),
                         name="tracking_provider_id_idx"),
            models.Index(fields=["notification_id"],
                         condition=models.Q(message__isnull=True) & ~models.Q(notification_id=""),
                         name="tracking_unknown_nid_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.esp} {self.event_type} #{self.message_id or '?'}"


class MetricTotal(models.Model):
    """A cumulative count since the platform's first send, for /metrics (notifications/totals.py).

    One row per (lane, provider, name, label): `sent`, `failed` by outcome, `retried`, `dead` by
    reason, `suppressed` by reason, and the buckets and sums of two histograms (send duration,
    enqueue to sent). Written in the transaction that records what it counts, so it is right
    across processes and hosts and is never lowered: Prometheus reads a counter that goes down
    as a restart. A few dozen rows in all, kept when the history they count is deleted."""

    lane = models.CharField(max_length=20)
    provider = models.CharField(max_length=100, blank=True, default="")
    name = models.CharField(max_length=40)
    label = models.CharField(max_length=40, blank=True, default="")
    value = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["lane", "provider", "name", "label"],
                                               name="one_metric_total_per_key")]

    def __str__(self) -> str:
        return f"{self.lane} {self.provider} {self.name} {self.label}: {self.value}"
