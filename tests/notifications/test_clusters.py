"""Per-cluster heartbeats (notifications/clusters.py): each qcluster worker beats its row, and
the rows grouped by qcluster process say which clusters are up and how many workers each has,
with any broker. Real clusters beating: tests/e2e/test_clusters_e2e.py."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone
from django_q.signals import post_spawn

from notifications import clusters
from notifications.clusters import (
    Beater,
    WorkerIdentity,
    cluster_views,
    install,
    worker_beat,
    worker_stopped,
    workers_prune,
)
from notifications.models import ClusterWorker


def identity(pid: int, cluster_pid: int, *, cluster: str = "bulk", host: str = "h1",
             workers: int = 2, started_at: datetime | None = None) -> WorkerIdentity:
    return WorkerIdentity(host=host, pid=pid, cluster_pid=cluster_pid, parent_pid=os.getppid(),
                          cluster=cluster, workers=workers,
                          started_at=started_at or timezone.now() - timedelta(hours=1))


@pytest.fixture
def beat_every_10s(settings: Any) -> None:
    settings.NOTIFY = {**settings.NOTIFY, "CLUSTER_BEAT_SECONDS": 10}


@pytest.mark.django_db
def test_it_keeps_one_row_per_worker_and_a_reused_pid_takes_it_over() -> None:
    now = timezone.now()
    worker_beat(identity(101, 100), now=now - timedelta(seconds=20))
    worker_beat(identity(101, 100), now=now)

    row = ClusterWorker.objects.get()
    assert (row.pid, row.cluster_pid, row.beat_at, row.stopped_at) == (101, 100, now, None)

    worker_stopped(identity(101, 100), now=now)
    # Later the host gives pid 101 to a worker of another cluster: the old row is its.
    worker_beat(identity(101, 200, cluster="transactional"), now=now + timedelta(seconds=5))

    row = ClusterWorker.objects.get()
    assert (row.cluster, row.cluster_pid, row.stopped_at) == ("transactional", 200, None)


@pytest.mark.django_db
@pytest.mark.usefixtures("beat_every_10s")
def test_two_clusters_on_one_lane_are_two_with_their_live_workers() -> None:
    now = timezone.now()
    fresh, stale = now - timedelta(seconds=5), now - timedelta(seconds=31)
    # Cluster 100 on h1: two workers beating, a third killed (silent past three beats).
    worker_beat(identity(101, 100, workers=3), now=fresh)
    worker_beat(identity(102, 100, workers=3), now=fresh)
    worker_beat(identity(103, 100, workers=3), now=stale)
    # Cluster 200 on the same host and lane: all its workers silent.
    worker_beat(identity(201, 200), now=stale)
    worker_beat(identity(202, 200), now=stale - timedelta(seconds=3))
    # Cluster 300 on h2 stopped cleanly a second ago.
    worker_beat(identity(301, 300, host="h2"), now=now)
    worker_stopped(identity(301, 300, host="h2"), now=now - timedelta(seconds=1))
    # The transactional lane's cluster.
    worker_beat(identity(401, 400, cluster="transactional"), now=fresh)

    views = {(v.cluster, v.host, v.pid): v for v in cluster_views(now=now)}

    assert set(views) == {("bulk", "h1", 100), ("bulk", "h1", 200), ("bulk", "h2", 300),
                          ("transactional", "h1", 400)}
    one, two, three = views["bulk", "h1", 100], views["bulk", "h1", 200], views["bulk", "h2", 300]
    assert (one.state, one.live_workers, one.workers, one.last_seen) == ("up", 2, 3, fresh)
    assert (two.state, two.live_workers, two.last_seen) == ("not beating", 0, stale)
    assert (three.state, three.live_workers) == ("stopped", 0)
    assert views["transactional", "h1", 400].live_workers == 1


@pytest.mark.django_db
def test_long_silent_workers_are_forgotten() -> None:
    now = timezone.now()
    worker_beat(identity(101, 100), now=now - timedelta(days=1, seconds=1))
    worker_beat(identity(201, 200), now=now - timedelta(hours=23))

    assert [v.pid for v in cluster_views(now=now)] == [200]
    assert workers_prune(now=now) == 1
    assert list(ClusterWorker.objects.values_list("pid", flat=True)) == [201]


@pytest.mark.django_db(transaction=True)
def test_the_beat_thread_beats_until_stopped_and_then_says_stopped() -> None:
    me = replace(identity(os.getpid(), 1), started_at=timezone.now())
    beater = Beater(me, interval=0.05)
    beater.start()
    try:
        deadline = time.monotonic() + 10
        first = None
        while time.monotonic() < deadline:
            row = ClusterWorker.objects.filter(pid=me.pid).first()
            if row and first is None:
                first = row.beat_at
            if row and first and row.beat_at > first:
                break
            time.sleep(0.02)
        else:
            raise AssertionError("the thread did not beat twice")
    finally:
        beater.stop()

    assert not beater.is_alive()
    stopped = ClusterWorker.objects.get(pid=me.pid)
    assert stopped.stopped_at is not None
    time.sleep(0.15)  # three intervals: no beat comes after the stop
    assert ClusterWorker.objects.get(pid=me.pid).stopped_at == stopped.stopped_at


@pytest.mark.django_db(transaction=True)
def test_an_orphaned_worker_does_not_beat() -> None:
    """Its sentinel died: it gets no task any more and must not look alive."""
    orphan = replace(identity(os.getpid(), 1), parent_pid=os.getppid() + 1)
    beater = Beater(orphan, interval=0.01)
    beater.start()
    beater.join(timeout=5)

    assert not beater.is_alive()
    assert not ClusterWorker.objects.exists()


def test_only_a_qcluster_process_makes_its_workers_beat(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(clusters, "_cluster_pid", None)
    try:
        assert install(["manage.py", "runserver"]) is False
        assert install(["pytest"]) is False
        assert clusters._cluster_pid is None
        assert not any(r[0][0] == "notifications-cluster-beat" for r in post_spawn.receivers)

        assert install(["manage.py", "qcluster"]) is True
        assert clusters._cluster_pid == os.getpid()
        assert any(r[0][0] == "notifications-cluster-beat" for r in post_spawn.receivers)
    finally:
        post_spawn.disconnect(dispatch_uid="notifications-cluster-beat")


def test_a_worker_belongs_to_the_qcluster_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clusters, "_cluster_pid", 4242)

    me = clusters.worker_identity()

    assert (me.pid, me.cluster_pid, me.parent_pid) == (os.getpid(), 4242, os.getppid())
