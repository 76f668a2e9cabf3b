"""Migrations that build indexes on tables that can be big do it CONCURRENTLY on PostgreSQL, so
writes go on meanwhile, and plainly on SQLite (notifications/migration_operations.py); the
rollup's new key (0016) can be migrated back and forth, and again after a failed build."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from notifications.migration_operations import index_validity
from notifications.models import LaneMinute
from notifications.rollup import minute_of, rollup_add

# CREATE INDEX CONCURRENTLY refuses to run in a transaction, so these tests run outside one.
pytestmark = pytest.mark.django_db(transaction=True)

POSTGRES = connection.vendor == "postgresql"
BEFORE = ("notifications", "0018_laneminute_provider_reputationrate")
KEY = ("notifications", "0019_laneminute_provider_key")
NEW_KEY = "one_row_per_lane_minute_provider"
TABLE = LaneMinute._meta.db_table


def sqlmigrate(name: str) -> str:
    out = StringIO()
    call_command("sqlmigrate", "notifications", name, stdout=out)
    return out.getvalue()


@pytest.mark.parametrize("name", ["0012_attempt_sent_provider_idx", "0013_admin_search_indexes",
                                  "0019_laneminute_provider_key"])
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


@pytest.fixture
def at_0015() -> Iterator[MigrationExecutor]:
    """The notifications app migrated back to before the rollup's new key; forward again after
    the test whatever happens, so the next tests find the schema they expect."""
    executor = MigrationExecutor(connection)
    executor.migrate([BEFORE])
    try:
        yield executor
    finally:
        executor = MigrationExecutor(connection)
        if executor.migration_plan([KEY]):
            executor.migrate([KEY])


@pytest.mark.parametrize("leftover", ["none", "built by hand", "failed build"])
def test_the_rollup_key_migrates_keeping_the_rows(at_0015: MigrationExecutor,
                                                  leftover: str) -> None:
    if leftover != "none" and not POSTGRES:
        pytest.skip("CREATE INDEX CONCURRENTLY leftovers exist on PostgreSQL only")
    minute = minute_of(timezone.now() - timedelta(minutes=5))
    row = LaneMinute.objects.create(lane="bulk", minute=minute, sent=5)  # from before: ""
    q = connection.ops.quote_name
    with connection.cursor() as cursor:
        if leftover == "built by hand":  # as docs/architecture.md suggests on a big table
            cursor.execute(f"CREATE UNIQUE INDEX CONCURRENTLY {q(NEW_KEY)} ON {q(TABLE)} "
                           "(lane, minute, provider)")
        elif leftover == "failed build":  # an interrupted build leaves an invalid index
            with pytest.raises(DatabaseError):
                cursor.execute(f"CREATE UNIQUE INDEX CONCURRENTLY {q(NEW_KEY)} ON {q(TABLE)} "
                               "((sent / 0))")
            assert index_validity(connection.schema_editor(), NEW_KEY) is False

    MigrationExecutor(connection).migrate([KEY])

    constraints = connection.introspection.get_constraints(connection.cursor(), TABLE)
    assert constraints[NEW_KEY]["unique"]
    assert constraints[NEW_KEY]["columns"] == ["lane", "minute", "provider"]
    assert "one_row_per_lane_minute" not in constraints
    rollup_add(lane="bulk", at=minute, sent=2)  # the old row, through the new upsert
    rollup_add(lane="bulk", at=minute, provider="primary", sent=3)
    assert dict(LaneMinute.objects.values_list("provider", "sent")) == {"": 7, "primary": 3}
    assert LaneMinute.objects.get(provider="").pk == row.pk


def test_back_to_0018_each_minute_is_one_row_again() -> None:
    """Rolling the deploy back: the old key allows one row per lane and minute, so each
    minute's providers are added up into one."""
    minute = minute_of(timezone.now() - timedelta(minutes=5))
    for provider, sent, failed in (("", 1, 2), ("primary", 10, 0), ("secondary", 5, 1)):
        rollup_add(lane="bulk", at=minute, provider=provider, sent=sent, failed=failed)
    rollup_add(lane="transactional", at=minute, provider="primary", sent=3)
    try:
        MigrationExecutor(connection).migrate([BEFORE])
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT lane, provider, sent, failed FROM {TABLE} ORDER BY lane")
            rows = cursor.fetchall()
    finally:
        MigrationExecutor(connection).migrate([KEY])

    assert rows == [("bulk", "", 16, 3), ("transactional", "primary", 3, 0)]
