"""A send rate per provider shared by every worker on every host.

NOTIFY_PROVIDER_RATE_PER_SECOND (0 = none) spaces sends 1/rate seconds apart, whichever worker or
host makes them, with GCRA (the generic cell rate algorithm) in its reserve-ahead form: one atomic
step moves the provider's "theoretical arrival time" (TAT) on by n/rate and answers how long
until the first of those n sends may start, `max(TAT, now) - now`. Nothing is counted per window
and nothing needs resetting; the clock is the store's, so hosts with skewed clocks agree.

Where the TAT lives:
- Redis, when REDIS_URL is set: one Lua script (Redis's TIME, GET, SET with an expiry), atomic.
- Otherwise the database: on PostgreSQL one INSERT ... ON CONFLICT DO UPDATE using
  clock_timestamp() (the row lock serialises concurrent reservations); elsewhere (SQLite, one
  host) the same arithmetic inside a transaction, on this host's clock.

Only the drain's own thread reserves (it also reads the database); the sending thread sleeps the
answer before it sends.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import cache
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from notifications.models import ProviderRate
from notifications.redis_client import redis_client

logger = logging.getLogger(__name__)

_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local start = math.max(tat, now)
local new = start + tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%.6f', new), 'PX', math.ceil((new - now) * 1000) + 60000)
return string.format('%.6f', start - now)
"""

_PG = (
    f'INSERT INTO "{ProviderRate._meta.db_table}" ("provider", "tat") '
    "VALUES (%s, clock_timestamp() + make_interval(secs => %s)) "
    'ON CONFLICT ("provider") DO UPDATE SET "tat" = GREATEST('
    f'"{ProviderRate._meta.db_table}"."tat", clock_timestamp()) + make_interval(secs => %s) '
    'RETURNING EXTRACT(EPOCH FROM ("tat" - clock_timestamp())) - %s'
)


class RateLimiter:
    """Reserve send slots for `provider` at `rate` per second (see the module docstring)."""

    def __init__(self, provider: str, rate: float) -> None:
        self.provider = provider[:200]
        self.interval = 1.0 / rate
        self._redis = _redis_script() if settings.REDIS_URL else None

    def reserve(self, n: int = 1) -> float:
        """Take n slots; seconds from now until the first may start (the i-th at + i/rate)."""
        span = self.interval * n
        if self._redis is not None:
            try:
                return max(0.0, float(self._redis(keys=[f"notify:rate:{self.provider}"],
                                                  args=[span])))
            except Exception:  # Redis down: the database is the shared place then
                logger.warning("rate limit: Redis failed, using the database", exc_info=True)
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(_PG, [self.provider, span, span, span])
                return max(0.0, float(cursor.fetchone()[0]))
        with transaction.atomic():
            now = timezone.now()
            row = ProviderRate.objects.select_for_update().filter(provider=self.provider).first()
            start = max(row.tat, now) if row is not None else now
            ProviderRate.objects.update_or_create(
                provider=self.provider, defaults={"tat": start + timedelta(seconds=span)})
        # Counted from after the commit, not from `now`: the slot is a time on this host's clock,
        # and a commit that waited for SQLite's lock or its disk must not push it later (a send
        # let go late lands in the next second beside the sends that were on time there).
        return max(0.0, (start - timezone.now()).total_seconds())


def limiter_for(provider: str) -> RateLimiter | None:
    rate = settings.NOTIFY["PROVIDER_RATE_PER_SECOND"]
    return RateLimiter(provider, rate) if rate > 0 else None


@cache
def _redis_script() -> Any:
    return redis_client(settings.REDIS_URL).register_script(_LUA)
