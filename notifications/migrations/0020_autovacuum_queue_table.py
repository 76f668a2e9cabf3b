"""Autovacuum for the queue table on PostgreSQL: vacuum and analyze after 2 % of its rows changed,
not PostgreSQL's default 20 %.

Every message is updated several times (claimed, sent, maybe retried, tracked) and retention
deletes in bulk: measured (bench/retention.py), deleting 565,000 of 1,080,000 rows left 565,000
dead rows that the default threshold (50 + 20 % of the table) had not yet vacuumed. Dead rows
in the partial claim indexes make every claim's index scan longer. At 2 % the table is vacuumed
after ~20,000 changes per million rows. SQLite has no autovacuum: nothing to do there.
"""

from django.db import migrations

TABLE = "notifications_message"
OPTIONS = ("autovacuum_vacuum_scale_factor = 0.02", "autovacuum_analyze_scale_factor = 0.02")


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE {TABLE} SET ({', '.join(OPTIONS)})")


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        names = ", ".join(option.split(" = ")[0] for option in OPTIONS)
        schema_editor.execute(f"ALTER TABLE {TABLE} RESET ({names})")


class Migration(migrations.Migration):

    dependencies = [
        ("notifications", "0019_laneminute_provider_key"),
    ]

    operations = [migrations.RunPython(forwards, backwards, elidable=False)]
