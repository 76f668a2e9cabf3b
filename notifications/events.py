"""Structured events: one log line per state change of a message and per recorded drain chunk.

Logged by `notifications.events` at INFO with their facts as fields (`extra`): with LOG_FORMAT=json
each is one JSON object (`{"message": "message.sent", "message_id": 7, "lane": "bulk",
"provider": "default", "outcome": "sent", ...}`), with text the fields follow the event name as
key=value. Emitted after the transaction that made the change commits, so a line is never
written for a change that was rolled back. LOG_LEVEL_EVENTS=WARNING silences them.

Events: message.sent, message.retry, message.dead, message.suppressed, message.lease_expired
(per message) and drain.chunk (per recorded chunk of a drain).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

logger = logging.getLogger("notifications.events")


def enabled() -> bool:
    return logger.isEnabledFor(logging.INFO)


def emit(event: str, **fields: Any) -> None:
    logger.info(event, extra=fields)


def emit_all(events: Iterable[tuple[str, dict[str, Any]]]) -> None:
    if enabled():
        for event, fields in events:
            logger.info(event, extra=fields)
