"""The tracking catch-up's own queue (notifications/tracking.py tracking_catch_up): when each
unapplied event is tried next and how many times it was tried, so events that never match are
retried less often and given up on instead of holding back every newer one.

The events kept unapplied in the last day (those the old catch-up still looked at) join the
queue at once; older ones count as given up."""

from datetime import timedelta

from django.db import migrations, models
from django.db.models import F
from django.utils import timezone

CATCH_UP_HOURS = 24  # notifications.tracking.CATCH_UP_HOURS when this was written


def queue_recent(apps, schema_editor):
    TrackingEvent = apps.get_model("notifications", "TrackingEvent")
    since = timezone.now() - timedelta(hours=CATCH_UP_HOURS)
    TrackingEvent.objects.filter(applied=False, received_at__gte=since).update(
        catch_up_at=F("received_at"))


class Migration(migrations.Migration):

    dependencies = [
        ('notifications', '0016_metric_totals'),
    ]

    operations = [
        migrations.AddField(
            model_name='trackingevent',
            name='catch_up_at',
            field=models.DateTimeField(blank=True, help_text='When the catch-up tries it next; empty once applied or given up.', null=True),
        ),
        migrations.AddField(
            model_name='trackingevent',
            name='catch_up_tries',
            field=models.PositiveSmallIntegerField(default=0, help_text='How many times the catch-up tried to match or apply it.'),
        ),
        migrations.AddIndex(
            model_name='trackingevent',
            index=models.Index(condition=models.Q(('catch_up_at__isnull', False)), fields=['catch_up_at', 'id'], name='tracking_catch_up_idx'),
        ),
        migrations.RunPython(queue_recent, migrations.RunPython.noop),
    ]
