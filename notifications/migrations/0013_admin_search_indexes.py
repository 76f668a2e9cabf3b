"""Indexes for the operators' searches of the suppression list and the tracking events
(notifications/admin_deliverability.py): no search or page of the list scans the table."""

import django.db.models.functions.text
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('notifications', '0012_attempt_sent_provider_idx'),
    ]

    operations = [
        migrations.AddIndex(
            model_name='suppression',
            index=models.Index(fields=['email'], name='suppression_email_prefix_idx', opclasses=['varchar_pattern_ops']),
        ),
        migrations.AddIndex(
            model_name='suppression',
            index=models.Index(fields=['updated_at', 'id'], name='suppression_updated_idx'),
        ),
        migrations.AddIndex(
            model_name='trackingevent',
            index=models.Index(django.db.models.functions.text.Upper('recipient'), name='tracking_recipient_idx'),
        ),
        migrations.AddIndex(
            model_name='trackingevent',
            index=models.Index(condition=models.Q(('provider_message_id', ''), _negated=True), fields=['provider_message_id'], name='tracking_provider_id_idx'),
        ),
        migrations.AddIndex(
            model_name='trackingevent',
            index=models.Index(condition=models.Q(('message__isnull', True), models.Q(('notification_id', ''), _negated=True)), fields=['notification_id'], name='tracking_unknown_nid_idx'),
        ),
    ]
