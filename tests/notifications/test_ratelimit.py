"""The shared send rate: GCRA reservations in the database or in Redis."""

from __future__ import annotations

import os
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

    waits = [limiter.reserve(), limiter.reserve(), limiter.reserve(5), limiter.reserve()]

    # Each answer is how long until the first reserved slot; the clock runs meanwhile, so allow
    # a few ms for the calls themselves.
    for got, expected in zip(waits, [0.0, 0.1, 0.2, 0.7], strict=True):
        assert expected - 0.03 <= got <= expected + 0.001, waits


def test_an_idle_provider_gives_no_credit_for_the_past(store: str) -> None:
    """GCRA: the schedule restarts from now after a pause, it does not allow a burst."""
    import time

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
        assert limiter.reserve() == pytest.approx(0.0, abs=0.01)
        assert limiter.reserve() == pytest.approx(0.1, abs=0.02)
    finally:
        ratelimit._redis_script.cache_clear()
