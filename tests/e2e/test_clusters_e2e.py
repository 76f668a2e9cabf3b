"""Two real bulk clusters on one lane, with the ORM broker: the dashboard lists each with its
own pid and live worker count, calls the one killed down while the other stays up, and says
"stopped" for the one stopped cleanly."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.test import Client
from django.urls import reverse

from notifications.models import ClusterWorker
from tests.e2e.conftest import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True),
              pytest.mark.usefixtures("demo")]

DATA = "admin:notifications_message_dashboard_data"
BEAT = 0.5


def clusters(client: Client) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in client.get(reverse(DATA)).json()["clusters"]
            if c["source"] == "worker beats"}


def test_two_clusters_on_one_lane_are_seen_apart(own_clusters: Any, ops: Client,
                                                 settings: Any) -> None:
    assert not django_settings.Q_CLUSTER.get("redis")  # the ORM broker: Stat is out of sight
    settings.NOTIFY = {**settings.NOTIFY, "CLUSTER_BEAT_SECONDS": BEAT}
    env = {"NOTIFY_CLUSTER_BEAT_SECONDS": str(BEAT)}
    two = own_clusters("bulk", {**env, "Q_WORKERS_BULK": "2"})
    three = own_clusters("bulk", {**env, "Q_WORKERS_BULK": "3"})
    host = socket.gethostname()
    name_two = f"bulk on {host} (pid {two.proc.pid})"
    name_three = f"bulk on {host} (pid {three.proc.pid})"

    def both_up() -> dict[str, dict[str, Any]] | None:
        seen = clusters(ops)
        ready = [n for n in (name_two, name_three)
                 if n in seen and seen[n]["workers"] == seen[n]["configured_workers"]]
        return seen if len(ready) == 2 else None

    seen = wait_until(both_up, 60, "both clusters' workers to beat")
    a, b = seen[name_two], seen[name_three]
    assert (a["lane"], a["state"], a["workers"], a["configured_workers"]) == ("bulk", "up", 2, 2)
    assert (b["lane"], b["state"], b["workers"], b["configured_workers"]) == ("bulk", "up", 3, 3)
    rows = ClusterWorker.objects.filter(cluster_pid__in=[two.proc.pid, three.proc.pid])
    assert rows.count() == 5 and rows.filter(stopped_at__isnull=True).count() == 5

    two.kill()  # SIGKILL to the whole cluster: nothing can say goodbye
    wait_until(lambda: clusters(ops)[name_two]["state"] == "down",
               BEAT * 3 + 10, "the killed cluster to be called down")
    after_kill = clusters(ops)
    assert after_kill[name_two]["workers"] == 0
    assert after_kill[name_three]["state"] == "up"

    three.stop()  # SIGTERM: its workers exit cleanly and say so
    stopped = clusters(ops)[name_three]
    assert (stopped["state"], stopped["workers"]) == ("stopped", 0)
