"""Per-producer rate limit: a fixed one-second window counted in the Django cache.

With REDIS_URL the cache is Redis, so the limit holds across all web processes; without it each
process counts on its own (the limit applies per process), which the README says.
"""

from __future__ import annotations

import time
from typing import Any

from django.core.cache import cache
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from notifications.api.authentication import ProducerUser


class ProducerRateThrottle(BaseThrottle):
    def allow_request(self, request: Request, view: Any) -> bool:
        user = request.user
        if not isinstance(user, ProducerUser):
            return True
        limit = user.producer.rate_limit_per_second
        if not limit:
            return True
        now = time.time()
        window = int(now)
        key = f"notify:rate:{user.producer.pk}:{window}"
        # add() is atomic: it creates the counter for this second only once.
        if cache.add(key, 1, timeout=2):
            count = 1
        else:
            try:
                count = cache.incr(key)
            except ValueError:  # expired between add() and incr()
                cache.add(key, 1, timeout=2)
                count = 1
        self._wait = window + 1 - now
        return count <= limit

    def wait(self) -> float:
        return max(1.0, getattr(self, "_wait", 1.0))
