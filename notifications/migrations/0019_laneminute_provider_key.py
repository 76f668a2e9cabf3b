"""The rollup's key becomes (lane, minute, provider), and the attempts lose
attempt_sent_provider_idx, whose only reader (the reputation guard's per-provider volume) now
reads the rollup.

Not atomic: on PostgreSQL the new unique index is built CONCURRENTLY (the rollup is written by
every drain while it builds) and the old index dropped CONCURRENTLY; each step can be run again
after a failure (notifications/migration_operations.py). The drains must not run across this
migration: code from before it upserts ON CONFLICT (lane, minute), which no longer matches a
constraint once the old one is gone, and the new code needs the new one (docs/architecture.md,
"Deploying migrations").

Back to 0015, each minute's rows are first added up into one (provider ""), as the old key
requires."""

from django.db import migrations, models
from django.db.models import Count, Sum

from notifications.migration_operations import (
    AddUniqueConstraintConcurrentlyOnPostgres,
    AtomicRemoveConstraint,
    RemoveIndexConcurrentlyOnPostgres,
)

_COUNTS = ("sent", "failed", "dead", "suppressed")


def merge_providers(apps, schema_editor):
    """Backwards: one row per lane and minute, the sum of its providers' rows."""
    LaneMinute = apps.get_model("notifications", "LaneMinute")
    split = (LaneMinute.objects.values("lane", "minute")
             .annotate(rows=Count("id"), **{f"total_{c}": Sum(c) for c in _COUNTS})
             .filter(rows__gt=1).order_by())
    for key in split:
        rows = LaneMinute.objects.filter(lane=key["lane"], minute=key["minute"])
        keep = rows.order_by("provider", "id").first()
        rows.exclude(pk=keep.pk).delete()
        rows.filter(pk=keep.pk).update(provider="", **{c: key[f"total_{c}"] for c in _COUNTS})


class Migration(migrations.Migration):

    atomic = False

    dependencies = [
        ('notifications', '0018_laneminute_provider_reputationrate'),
    ]

    operations = [
        AddUniqueConstraintConcurrentlyOnPostgres(
            model_name='laneminute',
            constraint=models.UniqueConstraint(fields=('lane', 'minute', 'provider'), name='one_row_per_lane_minute_provider'),
        ),
        AtomicRemoveConstraint(
            model_name='laneminute',
            name='one_row_per_lane_minute',
        ),
        # Runs only backwards, before the old constraint comes back.
        migrations.RunPython(migrations.RunPython.noop, merge_providers, atomic=True),
        RemoveIndexConcurrentlyOnPostgres(
            model_name='deliveryattempt',
            name='attempt_sent_provider_idx',
        ),
    ]
