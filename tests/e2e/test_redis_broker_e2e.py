"""REDIS_URL switches django-q2 to the Redis broker for wake-ups; delivery works the same."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
import redis
from django.conf import settings

from notifications.models import Message
from tests.e2e.conftest import cluster_database_url, wait_final, wait_until
from tests.fakes.smtp import FakeSMTP

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True),
              pytest.mark.usefixtures("demo")]

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


def test_an_event_sent_from_the_cli_goes_through_the_redis_broker(start_cluster: Any) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    with FakeSMTP() as smtp:
        env = {"REDIS_URL": REDIS_URL,
               "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
               "EMAIL_HOST": smtp.host, "EMAIL_PORT": str(smtp.port)}
        start_cluster("transactional", env)

        out = subprocess.run(
            [sys.executable, str(settings.BASE_DIR / "manage.py"), "send_event",
             "password.reset", "ann@example.com", "--data", '{"reset_url": "https://x.io/r"}'],
            env={**os.environ, **env, "DATABASE_URL": cluster_database_url()},
            capture_output=True, text=True, timeout=60, check=True,
        )

        assert "queued message" in out.stdout
        message = Message.objects.get()
        # Sent well before the cluster's first scheduler tick (30 s after start), so it was the
        # wake-up task through Redis that did it, not the sweeper.
        assert wait_final([message.pk], timeout=15)[message.pk].status == "sent"
        wait_until(lambda: smtp.received_for("ann@example.com"), 5, "the email to arrive")
        assert client.keys("django_q:notifications:cluster:*")  # the cluster runs on Redis
