"""Per-cluster heartbeats that work with any broker: each qcluster worker process says it is
alive, so the dashboard can list every cluster with its lane and live worker count.

django-q2's own status (`Stat`) is saved by each cluster's sentinel into the broker's cache:
with Redis every process can read it, but with the ORM broker it lands in the cluster's
process-local cache, out of the web process's sight. The lane heartbeat (LaneState.heartbeat_at,
written by drains and sweeps) says a lane is served, not by how many clusters or workers. So:

1. `install` runs in a `manage.py qcluster` process only (apps.ready): it remembers the process's
   pid (the cluster's identity, what `ps` and systemd show) and connects django-q2's
   `post_spawn` signal, which fires in each worker process as it starts.
2. Each worker then starts a daemon thread that upserts its ClusterWorker row (host, pid, its
   qcluster pid, Q_CLUSTER_NAME, configured workers) and beats it every
   NOTIFY_CLUSTER_BEAT_SECONDS, with its own short-lived database connection. A worker that
   exits cleanly (a stop, a recycle) marks its row stopped; one that is killed just stops
   beating. A worker whose sentinel died (it is orphaned and gets no task any more) stops too.
3. The dashboard (`cluster_views`) groups the rows by (host, qcluster pid): a cluster is up
   while one of its workers beat within three beats, and its worker count is the number of
   such workers, not the configured number. Rows silent for a day are deleted by the writers.
"""

from __future__ import annotations

import logging
import multiprocessing.util
import os
import socket
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connections
from django.utils import timezone

from notifications.models import ClusterWorker

logger = logging.getLogger(__name__)

FORGET_AFTER = timedelta(days=1)  # rows not beaten for this long are deleted
MISSED_BEATS = 3  # a worker is gone after this many beats missed
PRUNE_EVERY = 360  # beats between two prunes by one worker (an hour at the default 10 s)

_cluster_pid: int | None = None  # set by install() in the qcluster process, inherited by forks


@dataclass(frozen=True)
class WorkerIdentity:
    host: str
    pid: int
    cluster_pid: int
    parent_pid: int  # the sentinel that forked this worker: if it changes, the worker is orphaned
    cluster: str
    workers: int
    started_at: datetime


def beat_interval() -> float:
    return float(settings.NOTIFY["CLUSTER_BEAT_SECONDS"])


def worker_max_silence() -> timedelta:
    """A worker that has not beaten for this long is gone."""
    return timedelta(seconds=beat_interval() * MISSED_BEATS)


# --- writing (qcluster worker processes) ---------------------------------------------------------

def worker_beat(identity: WorkerIdentity, *, now: datetime) -> None:
    """Insert or refresh this worker's row (a pid reused on the host takes the old row over)."""
    ClusterWorker.objects.bulk_create(
        [ClusterWorker(host=identity.host, pid=identity.pid, cluster_pid=identity.cluster_pid,
                       cluster=identity.cluster, workers=identity.workers,
                       started_at=identity.started_at, beat_at=now, stopped_at=None)],
        update_conflicts=True, unique_fields=["host", "pid"],
        update_fields=["cluster_pid", "cluster", "workers", "started_at", "beat_at",
                       "stopped_at"])


def worker_stopped(identity: WorkerIdentity, *, now: datetime) -> None:
    ClusterWorker.objects.filter(host=identity.host, pid=identity.pid).update(
        beat_at=now, stopped_at=now)


def workers_prune(*, now: datetime) -> int:
    """Forget workers silent for FORGET_AFTER; returns how many rows went."""
    deleted, _ = ClusterWorker.objects.filter(beat_at__lt=now - FORGET_AFTER).delete()
    return deleted


class Beater(threading.Thread):
    """A worker process's heartbeat: a daemon thread, so it dies with the process."""

    def __init__(self, identity: WorkerIdentity, interval: float) -> None:
        super().__init__(name="cluster-beat", daemon=True)
        self.identity = identity
        self.interval = interval
        self.stopping = threading.Event()

    def run(self) -> None:
        beats = 0
        while not self.stopping.is_set():
            if os.getppid() != self.identity.parent_pid:
                # The sentinel died and left this worker orphaned: it gets no task any more,
                # so it must not look alive.
                logger.warning("worker %s lost its cluster; it stops beating", self.identity.pid)
                return
            self._write(lambda now: worker_beat(self.identity, now=now),
                        prune=beats % PRUNE_EVERY == 0)
            beats += 1
            self.stopping.wait(self.interval)

    def stop(self) -> None:
        """At a clean exit: end the loop, then mark the row stopped (no beat can follow it)."""
        self.stopping.set()
        if self.is_alive() and self is not threading.current_thread():
            self.join(timeout=5)
        self._write(lambda now: worker_stopped(self.identity, now=now), prune=False)

    def _write(self, write: Any, *, prune: bool) -> None:
        try:
            now = timezone.now()
            write(now)
            if prune:
                workers_prune(now=now)
        except Exception:  # the database is away: the next beat tries again
            logger.warning("could not write worker %s's beat", self.identity.pid, exc_info=True)
        finally:
            # A connection of this thread's own, closed each time: a worker holds no extra
            # database connection between beats.
            connections.close_all()


def worker_identity(*, cluster_pid: int | None = None) -> WorkerIdentity:
    from django_q.conf import Conf

    return WorkerIdentity(
        host=socket.gethostname()[:255], pid=os.getpid(),
        cluster_pid=cluster_pid or _cluster_pid or os.getppid(), parent_pid=os.getppid(),
        cluster=str(Conf.CLUSTER_NAME)[:100], workers=int(Conf.WORKERS or 0),
        started_at=timezone.now())


def start_beating(*, interval: float | None = None) -> Beater:
    """In a worker process: beat until the process ends; a clean exit marks the row stopped
    (multiprocessing runs its finalizers when a worker returns, not when it is killed)."""
    beater = Beater(worker_identity(), beat_interval() if interval is None else interval)
    beater.start()
    multiprocessing.util.Finalize(None, beater.stop, exitpriority=10)
    return beater


def _on_post_spawn(sender: Any, proc_name: str = "", **kwargs: Any) -> None:
    try:
        start_beating()
    except Exception:  # a worker must work even if its heartbeat cannot start
        logger.exception("could not start the worker's heartbeat")


def install(argv: Sequence[str]) -> bool:
    """In a `manage.py qcluster` process: make each of its workers beat. Elsewhere (web, tests,
    django-q2's sync mode, which runs tasks in the caller) nothing beats. Returns whether it
    installed."""
    global _cluster_pid
    if len(argv) < 2 or argv[1] != "qcluster":
        return False
    from django_q.signals import post_spawn

    _cluster_pid = os.getpid()
    post_spawn.connect(_on_post_spawn, dispatch_uid="notifications-cluster-beat")
    return True


# --- reading (the dashboard) ---------------------------------------------------------------------

@dataclass(frozen=True)
class ClusterView:
    cluster: str  # Q_CLUSTER_NAME, the lane for the lane clusters
    host: str
    pid: int  # the qcluster process
    live_workers: int
    workers: int  # configured
    last_seen: datetime
    started_at: datetime
    stopped: bool  # every worker exited cleanly

    @property
    def up(self) -> bool:
        return self.live_workers > 0

    @property
    def state(self) -> str:
        if self.up:
            return "up"
        return "stopped" if self.stopped else "not beating"


def cluster_views(*, now: datetime) -> list[ClusterView]:
    """Every cluster seen in the last FORGET_AFTER, by cluster name, host and pid."""
    rows = ClusterWorker.objects.filter(beat_at__gte=now - FORGET_AFTER).order_by(
        "cluster", "host", "cluster_pid", "pid")
    return group_workers(rows, now=now)


def group_workers(rows: Iterable[ClusterWorker], *, now: datetime) -> list[ClusterView]:
    fresh_since = now - worker_max_silence()
    groups: dict[tuple[str, str, int], list[ClusterWorker]] = {}
    for row in rows:
        groups.setdefault((row.cluster, row.host, row.cluster_pid), []).append(row)
    views = []
    for (cluster, host, pid), workers in groups.items():
        live = [w for w in workers if w.stopped_at is None and w.beat_at >= fresh_since]
        views.append(ClusterView(
            cluster=cluster, host=host, pid=pid, live_workers=len(live),
            workers=max(w.workers for w in workers),
            last_seen=max(w.beat_at for w in workers),
            started_at=min(w.started_at for w in workers),
            stopped=all(w.stopped_at is not None for w in workers)))
    return views
