"""The shared send rate: GCRA reservations in the database or in Redis."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest
import redis

from notifications import ratelimit
from notifications.ratelimit import RateLimiter

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


@pytest.fixture(params=["database", "redis"])
def store(request: Any, settings: Any, db: Any) -> str:
    settings.REDIS_URL = REDIS_URL if request.param == "redis" else ""
    ratelimit._redis_script.cache_clear()
    if request.param == "redis":
        redis.Redis.from_url(REDIS_URL).delete("notify:rate:test-provider")
    yield request.param
    ratelimit._redis_script.cache_clear()


def test_reservations_are_spaced_one_interval_apart(store: str) -> None:
    limiter = RateLimiter("test-provider", rate=10)  # one send per 100 ms

    waits, elapsed = [], []
    t0 = time.monotonic()
    for n in (1, 1, 5, 1):
        waits.append(limiter.reserve(n))
        elapsed.append(time.monotonic() - t0)  # when that answer was in hand, at the latest

    # Each answer is how long until the first reserved slot, counted from when it was computed:
    # the clock runs meanwhile (a loaded machine took 90 ms for one call), so each may be short
    # by up to the time spent so far, never long.
    for got, expected, spent in zip(waits, [0.0, 0.1, 0.2, 0.7], elapsed, strict=True):
        assert expected - spent - 0.005 <= got <= expected + 0.001, (waits, elapsed)


def test_an_idle_provider_gives_no_credit_for_the_past(store: str) -> None:
    """GCRA: the schedule restarts from now after a pause, it does not allow a burst."""
    limiter = RateLimiter("test-provider", rate=20)
    limiter.reserve()
    time.sleep(0.3)
    first = limiter.reserve()
    t0 = time.monotonic()
    second = limiter.reserve()
    between = time.monotonic() - t0  # a loaded machine may take a while between the two calls
    assert first == pytest.approx(0.0, abs=0.01)  # no burst credit, and no wait either
    assert 0.05 - between - 0.005 <= second <= 0.05 + 0.005


def test_redis_down_falls_back_to_the_database(settings: Any, db: Any) -> None:
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    ratelimit._redis_script.cache_clear()
    try:
        limiter = RateLimiter("test-provider", rate=10)
        t0 = time.monotonic()
        assert limiter.reserve() == pytest.approx(0.0, abs=0.01)
        second = limiter.reserve()
        spent = time.monotonic() - t0  # failed Redis connects, then the database's answers
        assert 0.1 - spent - 0.005 <= second <= 0.1 + 0.005
    finally:
        ratelimit._redis_script.cache_clear()
