"""Importing a suppression list from CSV (an operator's upload: a list from the old provider, a
customer's do-not-mail list).

The file is checked whole before anything is written: a file that is too big, not UTF-8, not
CSV or has too many rows is refused with one message and changes nothing. Then each row is
checked on its own (the address by notifications.addresses, the same validator the API uses; the
scope against suppression.categories(); lengths), and every good row is saved while each bad
row is reported with its line and why: one typo must not cost the other 10,000 rows, nor be
silently dropped. Good rows go through suppression.suppress_many (reason MANUAL, source
"import"; the rule of suppression.suppress, a thousand rows a query batch), so a complaint on
file stays a complaint; the whole import is one audit entry (SUPPRESS_IMPORT) with how many rows
changed and the operator's reason, written in the same transaction as the rows: all of it, or
nothing. (The rows it touches stay locked until the import commits, a few seconds for the
largest file; a webhook suppressing one of those addresses meanwhile waits for it.)

Columns: email[,scope][,note]. A header row is optional; with one, columns are found by name
(so a file exported from the console imports again: the other columns are ignored).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from email_validator import EmailNotValidError

from notifications import suppression
from notifications.addresses import normalize_email
from notifications.audit import audit_record
from notifications.models import AuditAction, Suppression, SuppressionReason

MAX_BYTES = 5 * 1024 * 1024
MAX_ROWS = 100_000
NOTE_MAX = 1000
EMAIL_MAX = Suppression._meta.get_field("email").max_length or 254
COLUMNS = ("email", "scope", "note")
# What a scope cell may say for "every email" (a category is a slug: it cannot contain a space).
ALL_MAIL = ("", "all mail")
# Rows per suppression.suppress_many call (a few queries each, with IN lists of this size); all
# the calls of one import share its transaction.
CHUNK = 1000


class ImportRefused(ValueError):
    """The file as a whole cannot be imported (nothing was written)."""


@dataclass(frozen=True)
class Row:
    line: int
    email: str
    scope: str
    note: str


@dataclass(frozen=True)
class RowError:
    line: int
    value: str
    problem: str


@dataclass
class Plan:
    """The file's rows, checked: what will be saved and what is refused."""

    rows: list[Row] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    header: bool = False


@dataclass(frozen=True)
class Result:
    changed: int  # added, reactivated or made stronger
    unchanged: int  # already suppressed as strongly (or a repeat within the file)
    errors: list[RowError]

    @property
    def saved(self) -> int:
        return self.changed + self.unchanged


def decode(data: bytes) -> str:
    """The upload as text (UTF-8, with or without the BOM spreadsheets write)."""
    if len(data) > MAX_BYTES:
        raise ImportRefused(f"The file is larger than {MAX_BYTES // (1024 * 1024)} MB: split it.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportRefused(f"The file is not UTF-8 text (byte {exc.start}): save it as CSV "
                            "UTF-8.") from exc
    if "\x00" in text:  # a spreadsheet or other binary file (and PostgreSQL refuses NUL)
        raise ImportRefused("The file holds NUL characters: it is not CSV text. Save it as "
                            "CSV UTF-8.")
    return text


def _header(cells: list[str]) -> dict[str, int] | None:
    """Column positions by name if `cells` is a header row (it names an `email` column)."""
    names = [c.strip().lower() for c in cells]
    if "email" not in names:
        return None
    return {name: names.index(name) for name in COLUMNS if name in names}


def plan(text: str, *, scopes: set[str]) -> Plan:
    """Check every row of `text` (CSV); raise ImportRefused for a file that cannot be read."""
    result = Plan()
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    positions: dict[str, int] | None = None
    first, counted = True, 0
    try:
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue  # blank lines
            if first:
                first = False
                positions = _header(cells)
                if positions is not None:
                    result.header = True
                    continue
            counted += 1
            if counted > MAX_ROWS:
                raise ImportRefused(f"The file has more than {MAX_ROWS:,} rows: split it.")
            _check(reader.line_num, cells, positions, scopes, result)
    except csv.Error as exc:
        raise ImportRefused(f"Line {reader.line_num}: not valid CSV ({exc}).") from exc
    return result


def _check(line: int, cells: list[str], positions: dict[str, int] | None, scopes: set[str],
           into: Plan) -> None:
    if positions is None:
        if len(cells) > len(COLUMNS):
            into.errors.append(RowError(line, cells[0][:EMAIL_MAX], f"{len(cells)} columns: "
                                        "expected email[,scope][,note]"))
            return
        positions = {name: i for i, name in enumerate(COLUMNS)}

    def cell(name: str) -> str:
        index = positions.get(name)
        return cells[index].strip() if index is not None and index < len(cells) else ""

    email, scope, note = cell("email"), cell("scope"), cell("note")
    shown = email[:80]
    if not email:
        into.errors.append(RowError(line, shown, "no address"))
        return
    if len(email) > EMAIL_MAX:
        into.errors.append(RowError(line, shown + "…", f"too long (over {EMAIL_MAX} characters)"))
        return
    try:
        email = suppression.normalize(normalize_email(email))
    except EmailNotValidError as exc:
        into.errors.append(RowError(line, shown, f"not a valid address: {exc}"))
        return
    if scope.lower() in ALL_MAIL:
        scope = ""
    elif scope not in scopes:
        known = ", ".join(sorted(scopes)) or "none"
        into.errors.append(RowError(line, shown, f"unknown scope {scope[:100]!r} (empty or "
                                                 f"'all mail' for every email; categories: "
                                                 f"{known})"))
        return
    if len(note) > NOTE_MAX:
        into.errors.append(RowError(line, shown, f"note too long (over {NOTE_MAX} characters)"))
        return
    into.rows.append(Row(line, email, scope, note))


def suppressions_import(*, data: bytes, filename: str, user: Any, reason: str) -> Result:
    """Check the upload, save its good rows, audit the import once. Raises ImportRefused (and
    writes nothing) for a file that cannot be imported at all."""
    checked = plan(decode(data), scopes=set(suppression.categories()))
    changed = 0
    rows = checked.rows
    # One transaction for every chunk and the audit entry: a chunk that fails (a lost
    # connection, a deadlock) rolls back the chunks before it too, so no row is ever written
    # without the entry that says who imported it and why. The operator sees the error and
    # imports the file again (the import is idempotent).
    with transaction.atomic():
        for start in range(0, len(rows), CHUNK):
            changed += suppression.suppress_many(
                [(row.email, row.scope, row.note) for row in rows[start:start + CHUNK]],
                reason=SuppressionReason.MANUAL, source="import")
        if rows:
            audit_record(
                user=user, action=AuditAction.SUPPRESS_IMPORT, count=changed, reason=reason,
                target=f"CSV import {filename[:150]}: {len(rows)} rows, "
                       f"{len(checked.errors)} refused",
                filter={"file": filename[:200], "rows": len(rows), "changed": changed,
                        "unchanged": len(rows) - changed, "refused": len(checked.errors)})
    return Result(changed=changed, unchanged=len(rows) - changed, errors=checked.errors)
