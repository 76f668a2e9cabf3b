"""The one Redis client per process for the state every worker shares (notifications/flow.py,
notifications/ratelimit.py). Short timeouts: a Redis that is down or hanging must not stall a
drain; both callers then use the database instead."""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def redis_client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
