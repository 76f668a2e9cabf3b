"""The message lifecycle: ONE table of transitions, and the only code that writes `status`.

Every move is a conditional UPDATE: `filter(pk__in=..., status__in=SOURCES).update(status=TARGET)`.
The row count says how many rows this caller actually moved; a row another worker moved first is
simply not matched, so two workers can never both move the same message. The lifecycle diagram in
the docs (`manage.py lifecycle_diagram`) is generated from TRANSITIONS.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db.models import Q
from django.utils import timezone

from notifications.models import Message, Status


@dataclass(frozen=True)
class Transition:
    sources: tuple[Status, ...]
    target: Status
    label: str


TRANSITIONS: dict[str, Transition] = {
    "claim": Transition((Status.PENDING, Status.RETRY), Status.PROCESSING, "drain claims (due)"),
    "mark_sent": Transition((Status.PROCESSING,), Status.SENT, "provider accepted"),
    "schedule_retry": Transition(
        (Status.PROCESSING,), Status.RETRY, "transient/unknown error, attempts left (backoff)"
    ),
    "release": Transition(
        (Status.PROCESSING,), Status.RETRY, "breaker open or lease expired: handed back"
    ),
    "kill": Transition(
        (Status.PROCESSING,), Status.DEAD, "permanent error, max attempts or expired"
    ),
    "cancel": Transition((Status.PENDING, Status.RETRY), Status.CANCELLED, "cancelled"),
    "requeue": Transition((Status.DEAD,), Status.PENDING, "operator requeues from DLQ"),
}


def move(name: str, where: Q, **fields: Any) -> int:
    """Apply transition `name` to the rows matching `where` that are in one of its sources.

    Returns how many rows moved. Callers compare it with what they expected.
    """
    transition = TRANSITIONS[name]
    return Message.objects.filter(where, status__in=transition.sources).update(
        status=transition.target, updated_at=timezone.now(), **fields
    )


def ids(pks: Iterable[int]) -> Q:
    return Q(pk__in=list(pks))


def mermaid_diagram() -> str:
    """The state diagram of TRANSITIONS in Mermaid syntax."""
    lines = ["stateDiagram-v2", f"    [*] --> {Status.PENDING.value}: notify()"]
    for name, transition in TRANSITIONS.items():
        for source in transition.sources:
            lines.append(
                f"    {source.value} --> {transition.target.value}: {name} ({transition.label})"
            )
    for final in (Status.SENT, Status.CANCELLED):
        lines.append(f"    {final.value} --> [*]")
    return "\n".join(lines)
