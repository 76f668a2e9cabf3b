"""Backpressure: refuse new work for a lane whose backlog is past its high-water mark.

The depth check is cheap by construction: it counts due-or-waiting rows of one lane through the
partial index, stops counting at the mark (`LIMIT mark + 1`), and each process reuses the answer
for DEPTH_CACHE_SECONDS. A lane with a million rows costs the same as one at the mark.
"""

from __future__ import annotations

import time

from django.conf import settings

from notifications.models import CLAIMABLE, Message

_cache: dict[str, tuple[float, bool]] = {}


def lane_is_full(lane: str) -> bool:
    conf = settings.NOTIFY_API
    mark = conf["HIGH_WATER"].get(lane)
    if not mark:
        return False
    now = time.monotonic()
    cached = _cache.get(lane)
    if cached is not None and cached[0] > now:
        return cached[1]
    waiting = Message.objects.filter(lane=lane, status__in=CLAIMABLE).values("pk")[: mark + 1]
    full = waiting.count() > mark
    _cache[lane] = (now + conf["DEPTH_CACHE_SECONDS"], full)
    return full


def retry_after(lane: str) -> int:
    return int(settings.NOTIFY_API["RETRY_AFTER"].get(lane, 30))


def clear_cache() -> None:
    _cache.clear()
