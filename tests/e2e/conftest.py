"""Real qcluster processes against the test database, for end-to-end tests.

The clusters are separate OS processes, so tests here use `transactional_db` (committed rows)
and the fakes run in this process, on 127.0.0.1, where the tests read what arrived.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

from notifications.models import Message
from tests.fakes.postmark import FakePostmark

E2E_NOTIFY_ENV = {
    # Fast retries so a test sees several attempts in seconds.
    "NOTIFY_RETRY_BASE_SECONDS": "0.2",
    "NOTIFY_RETRY_CAP_SECONDS": "1",
    "NOTIFY_BREAKER_PAUSE_SECONDS": "1",
    "NOTIFY_DRAIN_BUDGET_SECONDS": "10",
    "Q_POLL": "0.05",
    "EMAIL_TIMEOUT": "1",
    "LOG_LEVEL": "WARNING",
}


def cluster_database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


class Cluster:
    """One `Q_CLUSTER_NAME=<lane> manage.py qcluster` process."""

    def __init__(self, lane: str, env: dict[str, str], log_dir: Path) -> None:
        self.lane = lane
        self.env = env
        self.log_path = log_dir / f"qcluster-{lane}-{time.monotonic_ns()}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Cluster:
        env = {**os.environ, **E2E_NOTIFY_ENV, **self.env,
               "Q_CLUSTER_NAME": self.lane, "DATABASE_URL": cluster_database_url()}
        log = open(self.log_path, "wb")  # noqa: SIM115 (closed with the process)
        self.proc = subprocess.Popen(
            [sys.executable, str(settings.BASE_DIR / "manage.py"), "qcluster"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        return self

    def stop(self) -> None:
        """Graceful: SIGTERM to the main process lets in-flight sends finish."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """A crash: SIGKILL to every process of the cluster, mid-send or not."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture(scope="module")
def start_cluster(
    django_db_setup: Any, tmp_path_factory: pytest.TempPathFactory
) -> Any:
    started: list[Cluster] = []
    log_dir = tmp_path_factory.mktemp("clusters")

    def start(lane: str, env: dict[str, str]) -> Cluster:
        cluster = Cluster(lane, env, log_dir).start()
        started.append(cluster)
        return cluster

    yield start
    for cluster in started:
        cluster.stop()


@pytest.fixture(scope="module")
def postmark_module(start_cluster: Any) -> Iterator[FakePostmark]:
    """A fake Postmark on 127.0.0.1 and both lanes' clusters sending to it through Anymail's
    Postmark backend, for the module's tests (each resets the fake)."""
    with FakePostmark() as fake:
        env = {
            "EMAIL_BACKEND": "anymail.backends.postmark.EmailBackend",
            "ANYMAIL_POSTMARK_SERVER_TOKEN": fake.server_token,
            "ANYMAIL_POSTMARK_API_URL": fake.url,
            "ANYMAIL_REQUESTS_TIMEOUT": "1",
        }
        for lane in ("transactional", "bulk"):
            start_cluster(lane, env)
        yield fake


@pytest.fixture
def own_clusters(start_cluster: Any) -> Any:
    """start_cluster, but the clusters stop when the test ends: each test here has a fake of its
    own, and a cluster left running would drain the next test's messages into a closed port."""
    started: list[Any] = []

    def start(lane: str, env: dict[str, str]) -> Any:
        started.append(start_cluster(lane, env))
        return started[-1]

    yield start
    for cluster in started:
        cluster.stop()


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


FINAL = ("sent", "dead", "cancelled")


def wait_final(pks: list[int], timeout: float = 60) -> dict[int, Message]:
    def all_final() -> bool:
        return not Message.objects.filter(pk__in=pks).exclude(status__in=FINAL).exists()

    try:
        wait_until(all_final, timeout, "every message to reach a final status")
    except AssertionError:
        left = list(Message.objects.filter(pk__in=pks).exclude(status__in=FINAL)
                    .values_list("pk", "status", "attempts", "last_error"))
        raise AssertionError(f"messages not final after {timeout}s: {left}") from None
    return Message.objects.in_bulk(pks)


def outcome_of(final: dict[int, Message], messages: dict[str, Message]) -> Callable[[str], Any]:
    """outcome("a@example.com") -> (status, attempts, dead_reason) of that address's message."""

    def outcome(address: str) -> tuple[str, int, str]:
        m = final[messages[address].pk]
        return (m.status, m.attempts, m.dead_reason)

    return outcome
