from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core import mail
from django.test import Client

from notifications import listener, lookups, senders
from notifications.demo import seed_demo
from tests.factories import EventTypeFactory, staff
from tests.fakes.postmark import FakePostmark


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: Any) -> Iterator[None]:
    """pytest-django's test database, and the lane listener's connection to it closed before
    the database is dropped (PostgreSQL refuses to drop a database somebody is connected to)."""
    yield
    listener.stop()


@pytest.fixture(autouse=True)
def _fresh_lookups() -> None:
    """Each test starts with an empty per-process lookup cache: a value cached by an earlier
    test (whose rows were rolled back, so its pks may come back) must not leak into this one."""
    lookups.clear()
    senders._windows.clear()  # each test's first drain starts cold (one send in flight)


@pytest.fixture(autouse=True)
def _drains_end_when_idle(settings: Any) -> None:
    """In-process drains return as soon as nothing is due (in production an idle drain waits
    NOTIFY_DRAIN_IDLE_SECONDS for new mail); tests of that lingering set it themselves."""
    settings.NOTIFY = {**settings.NOTIFY, "DRAIN_IDLE_SECONDS": 0.0}


@pytest.fixture
def demo(db: Any) -> None:
    """The four demo event types with their templates."""
    seed_demo()


@pytest.fixture
def event_type(db: Any) -> Any:
    return EventTypeFactory()


@pytest.fixture
def outbox(settings: Any) -> list[mail.EmailMessage]:
    """Django's in-memory backend: what a drain run in-process sent."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    mail.outbox = []
    return mail.outbox


@pytest.fixture
def no_wakeups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record lane wake-ups instead of enqueuing django-q2 tasks (unit tests drain directly)."""
    woken: list[str] = []

    def fake_async_task(func: str, lane: str, **kwargs: Any) -> str:
        woken.append(lane)
        return "task-id"

    monkeypatch.setattr("notifications.wakeups.async_task", fake_async_task)
    return woken


@pytest.fixture
def ops(client: Client) -> Client:
    """The test client, logged in as a member of the console's `operators` group."""
    client.force_login(staff("olga", "operators"))
    return client


@pytest.fixture
def viewer_client() -> Client:
    """Another client, logged in as a member of the read-only `viewers` group."""
    client = Client()
    client.force_login(staff("victor", "viewers"))
    return client


@pytest.fixture
def postmark(settings: Any) -> Iterator[FakePostmark]:
    """Anymail's real Postmark backend pointed at a fake Postmark on 127.0.0.1, for drains run
    in-process; retries are due at once."""
    with FakePostmark() as fake:
        settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
        settings.ANYMAIL = {"POSTMARK_SERVER_TOKEN": fake.server_token,
                            "POSTMARK_API_URL": fake.url, "REQUESTS_TIMEOUT": 0.5}
        settings.NOTIFY = {**settings.NOTIFY, "RETRY_BASE_SECONDS": 0.0,
                           "RETRY_CAP_SECONDS": 0.0}
        yield fake
