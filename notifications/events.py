"""Structured events: one log line per state change of a message and per recorded drain chunk.

Logged by `notifications.events` at INFO with their facts as fields (`extra`): with LOG_FORMAT=json
each is one JSON object (`{"message": "message.sent", "message_id": 7, "lane": "bulk",
"provider": "default", "outcome": "sent", ...}`), with text the fields follow the event name as
key=value. Emitted after the transaction that made the change commits, so a line is never
written for a change that was rolled back. LOG_LEVEL_EVENTS=WARNING silences them.

Events, one per message: message.sent, message.retry, message.dead (the drain), message.released
(claimed, handed back untried), message.lease_expired (the sweeper), message.suppressed,
message.delivered / message.bounced / message.complained (tracking webhooks),
message.cancelled, message.requeued, message.discarded (operators); and drain.chunk per
recorded chunk of a drain. A claim is not an event of its own: drain.chunk counts them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.db import connection, transaction

logger = logging.getLogger("notifications.events")


def enabled() -> bool:
    return logger.isEnabledFor(logging.INFO)


def emit(event: str, **fields: Any) -> None:
    logger.info(event, extra=fields)


def emit_all(events: Iterable[tuple[str, dict[str, Any]]]) -> None:
    if enabled():
        for event, fields in events:
            logger.info(event, extra=fields)


def emit_on_commit(events: list[tuple[str, dict[str, Any]]]) -> None:
    """Emit `events` once the current transaction commits (at once outside one); nothing if it
    rolls back."""
    if not events or not enabled():
        return
    if connection.in_atomic_block:
        transaction.on_commit(lambda: emit_all(events))
    else:
        emit_all(events)
