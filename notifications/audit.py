"""The audit log's one writer: every operator action that changes the queue or what it sends
(requeue, discard, cancel, pause, resume, template activation, test sends) records who, when,
what, how many and why through `audit_record`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from notifications.models import AuditAction, AuditEntry


def audit_record(*, user: Any, action: AuditAction, target: str, count: int = 0,
                 reason: str = "", filter: Mapping[str, Any] | None = None) -> AuditEntry:
    """Append one entry. `user` may be None (a shell command or a scheduled task) or a string
    (a shell user's name)."""
    if isinstance(user, str) or user is None:
        username, user_obj = user or "", None
    else:
        username, user_obj = user.get_username(), user if user.pk else None
    return AuditEntry.objects.create(
        user=user_obj, username=username, action=action, target=target[:300], count=count,
        reason=reason, filter=dict(filter or {}))
