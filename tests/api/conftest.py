from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from notifications.producers import api_key_create, producer_get_or_create


@pytest.fixture(autouse=True)
def _fresh_caches(settings: Any) -> None:
    settings.NOTIFY_API = {**settings.NOTIFY_API, "DEPTH_CACHE_SECONDS": 0}
    cache.clear()  # rate-limit counters


@pytest.fixture
def producer(demo: None) -> Any:
    return producer_get_or_create(
        name="order-service", events=["order.placed", "password.reset", "marketing.newsletter"]
    )


@pytest.fixture
def token(producer: Any) -> str:
    return api_key_create(producer=producer)[1]


@pytest.fixture
def api(token: str, no_wakeups: list[str]) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


ORDER = {"order_id": 42, "total": "$19.90", "items": [{"name": "Tea", "qty": 2}]}


def event(**overrides: Any) -> dict[str, Any]:
    return {"event": "order.placed", "to": "ann@example.com", "data": ORDER, **overrides}
