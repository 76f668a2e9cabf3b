"""Process-wide, short-lived caches of configuration read on every enqueue.

Event types, active template versions and producers' allowed events change rarely but are read by
every request; reading them from the database each time was most of an API request's cost. Each
process keeps them for NOTIFY_LOOKUP_CACHE_SECONDS. A change saved through this process (admin,
services, tests) clears the cache at once via signals; other processes see it within the TTL.
API keys are NOT cached: revoking one must take effect at once everywhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from django.conf import settings
from django.db.models.signals import m2m_changed, post_delete, post_save

T = TypeVar("T")
_entries: dict[tuple[str, Any], tuple[float, Any]] = {}


def cached(kind: str, key: Any, load: Callable[[], T]) -> T:
    now = time.monotonic()
    entry = _entries.get((kind, key))
    if entry is not None and entry[0] > now:
        return entry[1]  # type: ignore[no-any-return]
    value = load()
    _entries[(kind, key)] = (now + settings.NOTIFY["LOOKUP_CACHE_SECONDS"], value)
    return value


def clear(*args: Any, **kwargs: Any) -> None:
    _entries.clear()


def connect() -> None:
    from notifications.models import EventType, Producer
    from templates_app.models import Template, TemplateVersion

    for model in (EventType, Producer, Template, TemplateVersion):
        post_save.connect(clear, sender=model, dispatch_uid=f"lookups-save-{model.__name__}")
        post_delete.connect(clear, sender=model, dispatch_uid=f"lookups-del-{model.__name__}")
    m2m_changed.connect(clear, sender=Producer.allowed_event_types.through,
                        dispatch_uid="lookups-m2m-allowed")
