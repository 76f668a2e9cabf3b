"""`manage.py dlq list|groups|requeue|discard|backfill-signatures|resume` for operators in a
shell. The writing commands print the dry run unless `--yes`; acting needs `--reason` and goes
through a tracked, audited Operation, run here in the foreground."""

from __future__ import annotations

import getpass
import math
import time
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from dlq.backfill import backfill_signatures
from dlq.models import Operation, RePin
from dlq.operations import InvalidOperation, operation_create, operation_run
from dlq.selectors import DeadLetterFilter, InvalidFilter, dead_letter_groups, preview
from notifications.models import DeliveryAttempt, Message


def _add_filters(parser: ArgumentParser) -> None:
    parser.add_argument("--dead-reason", default="",
                        help="dead reason (permanent_error, max_attempts, expired, ...)")
    parser.add_argument("--lane", default="")
    parser.add_argument("--event-type", default="")
    parser.add_argument("--domain", default="", help="recipient domain")
    parser.add_argument("--signature", default="", help="failure group (see `dlq groups`)")
    parser.add_argument("--since", default="", help="died at or after (YYYY-MM-DD or ISO)")
    parser.add_argument("--until", default="", help="died at or before")
    parser.add_argument("--search", default="", help="recipient, id, key or Message-ID")
    parser.add_argument("--ids", default="", help="comma-separated message ids")


class Command(BaseCommand):
    help = "Inspect and act on the dead letter queue (writing commands are dry runs by default)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        listing = sub.add_parser("list", help="list dead letters")
        _add_filters(listing)
        listing.add_argument("--limit", type=int, default=50)
        _add_filters(sub.add_parser("groups", help="dead letters by failure signature"))
        for kind in ("requeue", "discard"):
            act = sub.add_parser(kind, help=f"{kind} the matching dead letters (dry run "
                                             "unless --yes)")
            _add_filters(act)
            act.add_argument("--yes", action="store_true", help="act (else: print the preview)")
            act.add_argument("--reason", default="", help="why (required to act; audited)")
            act.add_argument("--pace", type=float, default=None, help="messages per second")
            if kind == "requeue":
                act.add_argument("--repin", choices=RePin.values, default=RePin.FAILED_ONLY)
                act.add_argument("--include-expired", action="store_true")
        sub.add_parser("backfill-signatures", help="sign dead letters that have no signature")
        resume = sub.add_parser("resume", help="run an unfinished operation here")
        resume.add_argument("operation", type=int)

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "backfill-signatures":
            done = backfill_signatures(Message, DeliveryAttempt)
            self.stdout.write(f"signed {done} dead letter(s)")
            return
        if action == "resume":
            operation = Operation.objects.filter(pk=options["operation"]).first()
            if operation is None:
                raise CommandError(f"no operation {options['operation']}")
            self._run(operation)
            return
        flt = self._filter(options)
        if action == "list":
            self._list(flt, options["limit"])
        elif action == "groups":
            for group in dead_letter_groups(flt):
                self.stdout.write(f"{group.signature or '-':16}  {group.count:6}  "
                                  f"{group.first_seen:%Y-%m-%d %H:%M}  "
                                  f"{group.last_seen:%Y-%m-%d %H:%M}  {group.label}")
        else:
            self._act(action, flt, options)

    def _filter(self, options: dict[str, Any]) -> DeadLetterFilter:
        try:
            return DeadLetterFilter.from_params({
                "reason": options["dead_reason"], "lane": options["lane"],
                "event_type": options["event_type"], "domain": options["domain"],
                "signature": options["signature"], "since": options["since"],
                "until": options["until"], "q": options["search"], "pks": options["ids"]})
        except InvalidFilter as exc:
            field, _, rest = str(exc).partition(":")
            option = {"reason": "dead-reason", "event_type": "event-type", "q": "search",
                      "pks": "ids"}.get(field, field)
            raise CommandError(f"--{option}:{rest}") from exc

    def _list(self, flt: DeadLetterFilter, limit: int) -> None:
        if limit < 1:
            raise CommandError("--limit must be at least 1")
        rows = flt.queryset().select_related("event_type").order_by("-id")[:limit]
        for m in rows:
            self.stdout.write(f"{m.pk:>8}  {m.lane:13}  {m.event_type.key:24}  {m.to_email:30}  "
                              f"{m.dead_reason:16}  {m.last_error[:60]}")

    def _act(self, kind: str, flt: DeadLetterFilter, options: dict[str, Any]) -> None:
        include_expired = bool(options.get("include_expired"))
        dry = preview(flt, kind=kind, include_expired=include_expired)
        self.stdout.write(f"{kind} {flt.describe()}: {dry.matching} matching")
        for lane, count in dry.per_lane.items():
            self.stdout.write(f"  lane {lane}: {count}")
        for key, label, count in dry.skipped_rows:
            self.stdout.write(f"  skipped ({key}: {label}): {count}")
        self.stdout.write(f"  may have been sent already: {dry.may_have_been_sent}")
        if not options["yes"]:
            self.stdout.write("dry run: nothing changed (add --yes --reason '...' to act)")
            return
        pace = options.get("pace")
        if pace is not None and not math.isfinite(pace):
            raise CommandError("--pace must be a number")
        try:
            operation = operation_create(
                kind=kind, flt=flt, reason=options["reason"], user=_shell_user(), pace=pace,
                repin=options.get("repin") or RePin.FAILED_ONLY, include_expired=include_expired)
        except InvalidOperation as exc:
            raise CommandError(f"--{exc}") from exc
        self._run(operation)

    def _run(self, operation: Operation) -> None:
        # Budget-long runs, one after another: the lease stays short, so if this shell is
        # interrupted the operation can be resumed (by the minute check or `dlq resume`).
        ran = operation_run(operation.pk, requeue_self=False)
        if ran is None:
            raise CommandError(f"operation {operation.pk} has ended or another worker holds it")
        while not ran.is_final:
            next_run = operation_run(operation.pk, requeue_self=False)
            if next_run is None:  # another worker took it meanwhile: watch it
                time.sleep(1)
            ran = next_run or Operation.objects.get(pk=operation.pk)
        self.stdout.write(f"operation {ran.pk}: {ran.status}, {ran.done} of {ran.total} "
                          f"done, skipped {ran.skipped or 0}")


def _shell_user() -> str:
    try:
        return f"shell:{getpass.getuser()}"
    except Exception:
        return "shell"
