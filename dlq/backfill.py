"""Failure signatures for dead letters that died before signatures existed (or were killed
without one): computed from each message's last DeliveryAttempt, as the drain computes them.

Used by the data migration dlq 0004 (with the migration's historical models) and by
`manage.py dlq backfill-signatures`.
"""

from __future__ import annotations

from typing import Any

from dlq.signatures import failure_signature

CHUNK = 500


def backfill_signatures(message_model: Any, attempt_model: Any, *, chunk: int = CHUNK) -> int:
    """Set failure_signature on every dead message that has none. Returns how many."""
    done = 0
    after = 0
    while True:
        rows = list(message_model.objects.filter(status="dead", failure_signature="",
                                                 pk__gt=after)
                    .order_by("pk").values_list("pk", "dead_reason", "to_email", "last_error")
                    [:chunk])
        if not rows:
            return done
        after = rows[-1][0]
        last: dict[int, tuple[str, str, str]] = {}
        for message_id, error_class, code, text in (
                attempt_model.objects.filter(message_id__in=[r[0] for r in rows])
                .order_by("message_id", "number", "id")
                .values_list("message_id", "error_class", "error_code", "error_message")):
            last[message_id] = (error_class, code, text)
        for pk, reason, to_email, last_error in rows:
            # No attempt on record: the error text the message keeps is all there is.
            error_class, code, text = last.get(pk, ("", "", last_error))
            signature = failure_signature(dead_reason=reason, error_class=error_class,
                                          error_code=code, error_message=text,
                                          to_email=to_email)
            done += message_model.objects.filter(pk=pk, status="dead",
                                                 failure_signature="").update(
                failure_signature=signature)
