"""The one per-process cache of what the hot paths read from the database.

Event types, active template versions, template versions by id (for rendering), producers' allowed
events, event keys, data validators, lane pauses and lane depths are read by every request or drain
but change rarely (or, for depth, need only be roughly fresh); reading them each time was most of
an API request's cost. Everything of that kind is kept here, in one dict, under (kind, key), for
NOTIFY_LOOKUP_CACHE_SECONDS (or the ttl a
caller gives: NOTIFY_DEPTH_CACHE_SECONDS for lane depth).

Clearing: every write that changes what is cached clears it all, at once and again when the
write's transaction commits (so a read between the write and its commit cannot keep a stale
value): model saves and deletes through post_save/post_delete/m2m_changed, and writes that send
no model signal (a queryset .update(), such as activating a template version) through the
signal their app sends (templates_app.signals.versions_changed). Other processes see a change
within the TTL. API keys are NOT cached: revoking one must take effect at once everywhere.

Pure functions of their arguments (compiled templates keyed by their source, MIME encodings,
domain checks, SQL text) are memoised with functools where they are; they hold nothing a write
can make stale, so they need no clearing. Nothing else in the code caches database state.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from django.conf import settings
from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save

T = TypeVar("T")
_entries: dict[tuple[str, Any], tuple[float, Any]] = {}


def cached(kind: str, key: Any, load: Callable[[], T], *, ttl: float | None = None) -> T:
    """The value cached under (kind, key), or load() it and keep it for `ttl` seconds."""
    now = time.monotonic()
    entry = _entries.get((kind, key))
    if entry is not None and entry[0] > now:
        return entry[1]
    value = load()
    seconds = settings.NOTIFY["LOOKUP_CACHE_SECONDS"] if ttl is None else ttl
    _entries[(kind, key)] = (now + seconds, value)
    return value


def peek(kind: str, key: Any) -> Any:
    """The value cached under (kind, key) if it is fresh, else None (loads nothing)."""
    entry = _entries.get((kind, key))
    return entry[1] if entry is not None and entry[0] > time.monotonic() else None


def put(kind: str, key: Any, value: Any, *, ttl: float | None = None) -> None:
    """Keep `value` under (kind, key) for `ttl` seconds (NOTIFY_LOOKUP_CACHE_SECONDS)."""
    seconds = settings.NOTIFY["LOOKUP_CACHE_SECONDS"] if ttl is None else ttl
    _entries[(kind, key)] = (time.monotonic() + seconds, value)


def clear() -> None:
    """Forget everything (tests call this before each test)."""
    _entries.clear()


def invalidate(*args: Any, **kwargs: Any) -> None:
    """Something cached was written: forget now, and again once the write commits."""
    _entries.clear()
    transaction.on_commit(clear)  # at once in autocommit; after COMMIT inside a transaction


def connect() -> None:
    from notifications.models import EventType, Producer
    from templates_app.models import Template, TemplateVersion
    from templates_app.signals import versions_changed

    for model in (EventType, Producer, Template, TemplateVersion):
        post_save.connect(invalidate, sender=model, dispatch_uid=f"lookups-save-{model.__name__}")
        post_delete.connect(invalidate, sender=model,
                            dispatch_uid=f"lookups-del-{model.__name__}")
    m2m_changed.connect(invalidate, sender=Producer.allowed_event_types.through,
                        dispatch_uid="lookups-m2m-allowed")
    # Sent on every send (now and on commit), so a plain clear: no further on_commit.
    versions_changed.connect(lambda **kw: clear(), weak=False, dispatch_uid="lookups-versions")
