"""Migrations that build indexes on tables that can be big do it CONCURRENTLY on PostgreSQL, so
writes go on meanwhile, and plainly on SQLite (notifications/migration_operations.py)."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from notifications.models import LaneMinute

# CREATE INDEX CONCURRENTLY refuses to run in a transaction, so these tests run outside one.
pytestmark = pytest.mark.django_db(transaction=True)

POSTGRES = connection.vendor == "postgresql"
BEFORE = ("notifications", "0015_laneminute_provider_reputationrate")
KEY = ("notifications", "0016_laneminute_provider_key")
NEW_KEY = "one_row_per_lane_minute_provider"
TABLE = LaneMinute._meta.db_table


def sqlmigrate(name: str) -> str:
    out = StringIO()
    call_command("sqlmigrate", "notifications", name, stdout=out)
    return out.getvalue()


@pytest.mark.parametrize("name", ["0012_attempt_sent_provider_idx", "0013_admin_search_indexes"])
def test_index_migrations_build_concurrently_on_postgresql(name: str) -> None:
    sql = sqlmigrate(name)

    if POSTGRES:
        builds = re.findall(r"^CREATE (?:UNIQUE )?INDEX.*$", sql, re.M)
        assert builds and all(" CONCURRENTLY " in b for b in builds), builds
        assert "BEGIN;" not in sql  # not atomic: CONCURRENTLY cannot run in a transaction
    else:
        assert "CONCURRENTLY" not in sql


def test_the_old_deliverability_migration_still_locks() -> None:
    """0011 mixes new tables, columns and indexes: left atomic, its indexes on the messages
    table are built plainly (docs/architecture.md says how to run it on a big table)."""
    sql = sqlmigrate("0011_deliverability")

    assert re.search(r'^CREATE INDEX "message_provider_id_idx"', sql, re.M)
    assert "CONCURRENTLY" not in sql
