"""Migration operations that build and drop indexes without locking a big table on PostgreSQL
and still run on SQLite.

A plain CREATE INDEX holds a lock that blocks every INSERT and UPDATE of the table until the
index is built: minutes on the messages or attempts table, during which notify() and the drains
wait. CREATE INDEX CONCURRENTLY lets writes go on, but cannot run in a transaction, so a
migration using these sets `atomic = False` (and should hold nothing else that needs one).

On PostgreSQL:
- an index of the same name that is already there and valid is kept: an operator built it by
  hand, CONCURRENTLY, before migrating (docs/architecture.md, "Deploying migrations");
- an invalid one, what a failed or interrupted concurrent build leaves behind, is dropped and
  built again, so the migration can simply be run again.

Elsewhere (SQLite) they are the plain operations, each in a transaction of its own.
"""

from __future__ import annotations

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import models, transaction
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.operations import AddConstraint, AddIndex, RemoveConstraint, RemoveIndex
from django.db.migrations.state import ProjectState


def on_postgresql(schema_editor: BaseDatabaseSchemaEditor) -> bool:
    return schema_editor.connection.vendor == "postgresql"


def index_validity(schema_editor: BaseDatabaseSchemaEditor, name: str) -> bool | None:
    """PostgreSQL: True if an index called `name` exists and is valid, False if it exists but
    is invalid (a failed concurrent build), None if there is none. Always None while only
    collecting SQL (sqlmigrate), which must not depend on the database it is run against."""
    if getattr(schema_editor, "collect_sql", False):
        return None
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)",
                       [schema_editor.quote_name(name)])
        row = cursor.fetchone()
    return None if row is None else bool(row[0])


def drop_invalid_index(schema_editor: BaseDatabaseSchemaEditor, name: str) -> bool:
    """Drop what a failed concurrent build of `name` left; True if a valid index is there."""
    valid = index_validity(schema_editor, name)
    if valid is False:
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {schema_editor.quote_name(name)}")
    return bool(valid)


class AddIndexConcurrentlyOnPostgres(AddIndexConcurrently):
    """AddIndexConcurrently on PostgreSQL (see the module doc), AddIndex elsewhere. The same
    migration state as AddIndex."""

    def database_forwards(self, app_label: str, schema_editor: BaseDatabaseSchemaEditor,
                          from_state: ProjectState, to_state: ProjectState) -> None:
        if not on_postgresql(schema_editor):
            with transaction.atomic(using=schema_editor.connection.alias):
                AddIndex.database_forwards(self, app_label, schema_editor, from_state, to_state)
            return
        self._ensure_not_in_transaction(schema_editor)
        if drop_invalid_index(schema_editor, self.index.name):
            return  # built by hand already
        super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label: str, schema_editor: BaseDatabaseSchemaEditor,
                           from_state: ProjectState, to_state: ProjectState) -> None:
        if not on_postgresql(schema_editor):
            AddIndex.database_backwards(self, app_label, schema_editor, from_state, to_state)
            return
        super().database_backwards(app_label, schema_editor, from_state, to_state)

    def describe(self) -> str:
        return f"Create index {self.index.name} on {self.model_name} (concurrently on PostgreSQL)"


class RemoveIndexConcurrentlyOnPostgres(RemoveIndexConcurrently):
    """RemoveIndexConcurrently on PostgreSQL (DROP INDEX CONCURRENTLY: it waits for the queries
    using the index instead of blocking the table), RemoveIndex elsewhere."""

    def database_forwards(self, app_label: str, schema_editor: BaseDatabaseSchemaEditor,
                          from_state: ProjectState, to_state: ProjectState) -> None:
        if not on_postgresql(schema_editor):
            RemoveIndex.database_forwards(self, app_label, schema_editor, from_state, to_state)
            return
        super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label: str, schema_editor: BaseDatabaseSchemaEditor,
                           from_state: ProjectState, to_state: ProjectState) -> None:
        if not on_postgresql(schema_editor):
            RemoveIndex.database_backwards(self, app_label, schema_editor, from_state, to_state)
            return
        self._ensure_not_in_transaction(schema_editor)
        if drop_invalid_index(schema_editor, self.name):
            return
        super().database_backwards(app_label, schema_editor, from_state, to_state)

    def describe(self) -> str:
        return f"Remove index {self.name} from {self.model_name} (concurrently on PostgreSQL)"


class AddUniqueConstraintConcurrentlyOnPostgres(AddConstraint):
    """A UniqueConstraint of plain columns, its index built concurrently on PostgreSQL: CREATE
    UNIQUE INDEX CONCURRENTLY, then ALTER TABLE ... ADD CONSTRAINT ... UNIQUE USING INDEX, which
    only attaches the built index (the same constraint AddConstraint makes, so a later
    RemoveConstraint drops it). AddConstraint elsewhere."""

    atomic = False

    def __init__(self, model_name: str, constraint: models.UniqueConstraint) -> None:
        plain = isinstance(constraint, models.UniqueConstraint) and constraint.fields and not (
            constraint.condition or constraint.expressions
            or getattr(constraint, "include", None) or getattr(constraint, "opclasses", None)
            or constraint.deferrable)
        if not plain:
            raise ValueError("USING INDEX takes a unique constraint of plain columns only")
        super().__init__(model_name, constraint)

    def database_forwards(self, app_label: str, schema_editor: BaseDatabaseSchemaEditor,
                          from_state: ProjectState, to_state: ProjectState) -> None:
        if not on_postgresql(schema_editor):
            with transaction.atomic(using=schema_editor.connection.alias):
                super().database_forwards(app_label, schema_editor, from_state, to_state)
            return
        if schema_editor.connection.in_atomic_block:
            raise ValueError(f"{self.constraint.name}: set atomic = False on the migration")
        model = to_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        q = schema_editor.quote_name
        name, table = self.constraint.name, model._meta.db_table
        fields = getattr(self.constraint, "fields", ())  # a UniqueConstraint's (checked above)
        columns = ", ".join(q(model._meta.get_field(f).column) for f in fields)
        if not drop_invalid_index(schema_editor, name):
            schema_editor.execute(
                f"CREATE UNIQUE INDEX CONCURRENTLY {q(name)} ON {q(table)} ({columns})")
        schema_editor.execute(
            f"ALTER TABLE {q(table)} ADD CONSTRAINT {q(name)} UNIQUE USING INDEX {q(name)}")

    def describe(self) -> str:
        return (f"Create constraint {self.constraint.name} on {self.model_name} (its index "
                "concurrently on PostgreSQL)")


class AtomicRemoveConstraint(RemoveConstraint):
    """RemoveConstraint in a transaction of its own inside a non-atomic migration: SQLite drops
    a constraint by rebuilding the table, several statements that must not stop halfway."""

    atomic = True
