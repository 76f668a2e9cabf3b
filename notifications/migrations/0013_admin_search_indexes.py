"""Indexes for the operators' searches of the suppression list and the tracking events
(notifications/admin_deliverability.py): no search or page of the list scans the table.

Built CONCURRENTLY on PostgreSQL (tracking events pile up fast; a plain CREATE INDEX would block
the webhooks' inserts for the whole build): notifications/migration_operations.py. Converted
after it shipped: a database that applied it never runs it again, and the resulting schema and
migration state are the same."""

import django.db.models.functions.text
from django.db import migrations, models

from notifications.migration_operations import AddIndexConcurrentlyOnPostgres


class Migration(migrations.Migration):

    atomic = False

    dependencies = [
        ('notifications', '0012_attempt_sent_provider_idx'),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name='suppression',
            index=models.Index(fields=['email'], name='suppression_email_prefix_idx', opclasses=['varchar_pattern_ops']),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name='suppression',
            index=models.Index(fields=['updated_at', 'id'], name='suppression_updated_idx'),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name='trackingevent',
            index=models.Index(django.db.models.functions.text.Upper('recipient'), name='tracking_recipient_idx'),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name='trackingevent',
            index=models.Index(condition=models.Q(('provider_message_id', ''), _negated=True), fields=['provider_message_id'], name='tracking_provider_id_idx'),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name='trackingevent',
            index=models.Index(condition=models.Q(('message__isnull', True), models.Q(('notification_id', ''), _negated=True)), fields=['notification_id'], name='tracking_unknown_nid_idx'),
        ),
    ]
