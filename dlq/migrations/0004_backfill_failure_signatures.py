from django.db import migrations


def forwards(apps, schema_editor):
    from dlq.backfill import backfill_signatures

    backfill_signatures(apps.get_model("notifications", "Message"),
                        apps.get_model("notifications", "DeliveryAttempt"))


class Migration(migrations.Migration):

    dependencies = [
        ("dlq", "0003_operations_alerts"),
        ("notifications", "0008_console_audit_pause_perms"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
